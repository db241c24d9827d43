"""The fast dataset paths: bulk insert checks, per-run find-first, compiled single lookups."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.errors import DimensionError, DimensionValueError
from rc2_platform.registry import CollectionType, DatasetType, Registry
from rc2_platform.registry import _search as search_module
from rc2_platform.registry._bulk import time_ordered_uuids

RAW = DatasetType("raw", ("instrument", "exposure", "detector"), "ExposureF")


@pytest.fixture
def reg(db_url: str) -> Iterator[Registry]:
    registry = Registry.create(db_url)
    registry.insert_dimension_records("instrument", [{"instrument": "HSC"}])
    registry.insert_dimension_records(
        "detector", [{"instrument": "HSC", "detector": d} for d in range(4)]
    )
    registry.insert_dimension_records("band", [{"band": "i"}])
    registry.insert_dimension_records(
        "physical_filter", [{"instrument": "HSC", "physical_filter": "HSC-I", "band": "i"}]
    )
    registry.insert_dimension_records("day_obs", [{"instrument": "HSC", "day_obs": 20200101}])
    registry.insert_dimension_records(
        "exposure",
        [
            {"instrument": "HSC", "exposure": e, "physical_filter": "HSC-I", "day_obs": 20200101}
            for e in range(5)
        ],
    )
    registry.register_dataset_type(RAW)
    for run in ("run/a", "run/b", "run/c"):
        registry.register_run(run)
    registry.register_collection("chain", CollectionType.CHAINED)
    registry.set_collection_chain("chain", ["run/a", "run/b", "run/c"])
    yield registry
    registry.close()


def _ids(exposures: range, detectors: range = range(4)) -> list[dict[str, object]]:
    return [
        {"instrument": "HSC", "exposure": e, "detector": d} for e in exposures for d in detectors
    ]


def _rows(reg: Registry, table: str) -> int:
    with reg.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def test_time_ordered_uuids_are_version_7_unique_and_increasing() -> None:
    first, second = time_ordered_uuids(1000), time_ordered_uuids(1000)
    assert {u.version for u in first} == {7}
    assert first == sorted(first)
    assert len(set(first) | set(second)) == 2000
    assert time_ordered_uuids(0) == []


def test_unknown_data_id_values_are_named_and_nothing_is_written(reg: Registry) -> None:
    ids = _ids(range(2)) + [{"instrument": "HSC", "exposure": 77, "detector": 1}]
    with pytest.raises(DimensionValueError, match="77.*exposure records"):
        reg.insert_datasets("raw", ids, "run/a")
    with pytest.raises(DimensionValueError, match="detector"):
        reg.insert_datasets("raw", [{"instrument": "HSC", "exposure": 1, "detector": 9}], "run/a")
    with pytest.raises(DimensionValueError, match="instrument"):
        reg.insert_datasets("raw", [{"instrument": "LSST", "exposure": 1, "detector": 1}], "run/a")
    assert _rows(reg, "dataset") == 0


def test_data_id_values_are_checked_and_normalised_once_per_value(reg: Registry) -> None:
    refs = reg.insert_datasets(
        "raw", [{"instrument": "HSC", "exposure": "3", "detector": 2, "band": "ignored"}], "run/a"
    )
    assert refs[0].data_id.values_tuple == ("HSC", 2, 3)
    with pytest.raises(DimensionValueError, match="'detector' must be an integer"):
        reg.insert_datasets(
            "raw", [{"instrument": "HSC", "exposure": 1, "detector": True}], "run/a"
        )
    with pytest.raises(DimensionError, match="detector"):
        reg.insert_datasets("raw", [{"instrument": "HSC", "exposure": 1}], "run/a")


def test_find_first_through_a_chain_of_runs_prefers_earlier_runs(reg: Registry) -> None:
    c = reg.insert_datasets("raw", _ids(range(5)), "run/c")
    b = reg.insert_datasets("raw", _ids(range(2)), "run/b")
    a = reg.insert_datasets("raw", _ids(range(1)), "run/a")
    found = reg.find_datasets("raw", "chain")
    expected = {r.data_id: r for r in [*c, *b, *a]}  # later assignment = earlier run
    assert found == expected
    assert sum(r.run == "run/a" for r in found.values()) == 4
    some = reg.find_datasets("raw", "chain", data_ids=_ids(range(1, 3), range(1)))
    assert sorted(r.run for r in some.values()) == ["run/b", "run/c"]
    filtered = reg.query_datasets("raw", "chain", where="detector > 1 AND exposure < 2")
    assert sorted((r.data_id["exposure"], r.data_id["detector"], r.run) for r in filtered)[:3] == [
        (0, 2, "run/a"),
        (0, 3, "run/a"),
        (1, 2, "run/b"),
    ]
    assert len(filtered) == 4
    assert len(reg.query_datasets("raw", "chain", find_first=False)) == 20 + 8 + 4


def test_per_run_merge_agrees_with_the_sql_window(
    reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg.insert_datasets("raw", _ids(range(5)), "run/c")
    reg.insert_datasets("raw", _ids(range(3), range(2)), "run/b")
    reg.insert_datasets("raw", _ids(range(1, 4), range(1, 3)), "run/a")
    merged = reg.find_datasets("raw", "chain")
    monkeypatch.setattr(search_module, "MAX_PER_RUN_QUERIES", 1)
    windowed = reg.find_datasets("raw", "chain")
    assert merged == windowed
    assert {r.run for r in merged.values()} == {"run/a", "run/b", "run/c"}


def test_single_lookups_see_new_datasets_and_the_open_transaction(reg: Registry) -> None:
    data_id = {"instrument": "HSC", "exposure": 4, "detector": 3}
    assert reg.find_dataset("raw", data_id, "chain") is None
    (c,) = reg.insert_datasets("raw", [data_id], "run/c")
    assert reg.find_dataset("raw", data_id, "chain") == c
    with reg.transaction():
        (b,) = reg.insert_datasets("raw", [data_id], "run/b")
        assert reg.find_dataset("raw", data_id, "chain") == b
    # Committed: seen from the kept lookup connection too, with string values coerced.
    found = reg.find_dataset("raw", {"instrument": "HSC", "exposure": "4", "detector": 3}, "chain")
    assert found == b
    canonical = DataCoordinate(("instrument", "detector", "exposure"), ("HSC", 3, 4))
    assert reg.find_dataset("raw", canonical, "run/c") == c
    assert reg.find_dataset("raw", {**data_id, "exposure": 0}, ["run/a", "run/b"]) is None


def test_tagged_membership_checks_values_and_is_removed_with_collections(reg: Registry) -> None:
    reg.register_run("run/x")
    refs = reg.insert_datasets("raw", _ids(range(2)), "run/x")
    reg.register_collection("tagged", CollectionType.TAGGED)
    reg.associate("tagged", refs[:3])
    with reg.engine.connect() as conn:
        tags = reg.datasets.get(conn, "raw").tags.name
    assert _rows(reg, tags) == 8 + 3
    assert set(reg.find_datasets("raw", "tagged").values()) == set(refs[:3])
    bad = DataCoordinate(("instrument", "detector", "exposure"), ("HSC", 0, 99))
    with pytest.raises(DimensionValueError, match="99"):
        reg.associate("tagged", [type(refs[0])(RAW, bad, "run/x", refs[4].id)])
    reg.remove_collection("tagged")
    assert _rows(reg, tags) == 8
    reg.register_collection("tagged", CollectionType.TAGGED)
    reg.associate("tagged", refs[:2])
    reg.remove_collection("run/x")
    assert _rows(reg, tags) == 0
    assert reg.find_datasets("raw", "tagged") == {}


def test_lookups_from_another_thread_use_their_own_connection(reg: Registry) -> None:
    from concurrent.futures import ThreadPoolExecutor

    refs = reg.insert_datasets("raw", _ids(range(2)), "run/b")
    data_id = {"instrument": "HSC", "exposure": 1, "detector": 2}
    here = reg.find_dataset("raw", data_id, "chain")
    with ThreadPoolExecutor(2) as pool:
        there = list(pool.map(lambda d: reg.find_dataset("raw", d, "chain"), _ids(range(2))))
    assert here in refs and there == refs
