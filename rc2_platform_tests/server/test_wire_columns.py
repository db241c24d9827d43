"""Dataset pages built from the registry's column search: unreadable RUNs leave no trace."""

from __future__ import annotations

import uuid

from rc2_platform.core import DatasetType
from rc2_platform.registry import DatasetColumnsFound
from rc2_platform.remote import wire

DT = DatasetType("calexp", ("instrument", "visit", "detector"), "ExposureF")


def _found() -> tuple[DatasetColumnsFound, list[uuid.UUID]]:
    ids = [uuid.uuid4() for _ in range(4)]
    found = DatasetColumnsFound(
        DT,
        runs=["public/a", "private/b", "public/c"],
        run=[0, 1, 2, 1],
        ids="".join(i.hex for i in ids),
        keys=[("HSC", 1, 0), ("HSC", 1, 1), ("HSC", 2, 0), ("HSC", 2, 1)],
    )
    return found, ids


def test_rows_of_unreadable_runs_are_dropped_and_runs_renumbered() -> None:
    found, ids = _found()
    page = wire.columns_from_found(found, lambda run: run.startswith("public/"))
    assert page["runs"] == ["public/a", "public/c"]
    assert page["run"] == [0, 1]
    assert page["ids"] == ids[0].hex + ids[2].hex
    assert page["columns"] == {"instrument": ["HSC", "HSC"], "visit": [1, 2], "detector": [0, 0]}
    refs = wire.refs_from_page({**page, "kind": "datasets"}, DT)
    assert [r.id for r in refs] == [ids[0], ids[2]]
    assert [r.run for r in refs] == ["public/a", "public/c"]


def test_everything_readable_is_passed_through() -> None:
    found, ids = _found()
    page = wire.columns_from_found(found, lambda run: True)
    assert page["run"] == [0, 1, 2, 1] and page["ids"] == found.ids
    assert [r.id for r in wire.refs_from_page(page, DT)] == ids
    nothing = wire.columns_from_found(found, lambda run: False)
    assert nothing["runs"] == [] and nothing["ids"] == "" and nothing["columns"]["visit"] == []
