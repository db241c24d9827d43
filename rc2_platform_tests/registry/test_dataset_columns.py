"""Column-wise registration (``Registry.import_dataset_columns``) on every backend.

The bulk path ``rc2 aggregate`` uses: ids as text, data-ID tuples, file records as
columns; idempotent (a repeat or an interrupted call completed by a repeat registers
each dataset once), and as strict as ``import_datasets`` about conflicts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from rc2_platform.core import DatastoreRecord
from rc2_platform.core.dataset_types import DatasetRef
from rc2_platform.errors import DatasetConflictError, DimensionValueError
from rc2_platform.registry import (
    DataCoordinate,
    DatasetColumns,
    DatasetType,
    DimensionUniverse,
    Registry,
    _bulk,
)
from rc2_platform_tests.registry.test_registry import populate

CALEXP = DatasetType("calexp", ("instrument", "visit", "detector"), "ExposureF")
COADD = DatasetType("deepCoadd", ("skymap", "tract", "patch", "band"), "ExposureF")
RUN = "u/test/columns"
#: The registry's (canonical) order of the calexp dimensions.
CALEXP_DIMS = DimensionUniverse.default().required(CALEXP.dimensions)


@pytest.fixture
def reg(db_url: str) -> Iterator[Registry]:
    registry = Registry.create(db_url)
    populate(registry)
    registry.register_dataset_type(CALEXP)
    registry.register_dataset_type(COADD)
    registry.register_run(RUN)
    assert registry.get_dataset_type("calexp").dimensions == CALEXP_DIMS
    yield registry
    registry.close()


def _calexps(ids: list[uuid.UUID], keys: list[tuple[object, ...]]) -> DatasetColumns:
    """Calexps of data IDs ``(instrument, visit, detector)`` in the registered order."""
    order = [CALEXP.dimensions.index(d) for d in CALEXP_DIMS]
    return DatasetColumns(
        "calexp",
        [str(i) if n % 2 else i.hex for n, i in enumerate(ids)],  # dashed or not: both taken
        [tuple(k[i] for i in order) for k in keys],
        [f"{RUN}/calexp/{k[1]}_{k[2]}.fits" for k in keys],
        ["fits_exposure"] * len(ids),
        ["ExposureF"] * len(ids),
        [100 + n for n in range(len(ids))],
    )


KEYS = [("HSC", v, d) for v in (1, 2) for d in (0, 1)]


def test_registers_datasets_and_records_once(reg: Registry) -> None:
    ids = [uuid.uuid4() for _ in KEYS]
    coadd_id = uuid.uuid4()
    coadd_key = tuple({"skymap": "rings", "tract": 9615, "patch": 0, "band": "r"}[d]
                      for d in reg.get_dataset_type("deepCoadd").dimensions)  # fmt: skip
    coadds = DatasetColumns("deepCoadd", [coadd_id.hex], [coadd_key],
                            ["c.fits"], ["fits"], ["ExposureF"], [7])  # fmt: skip
    first = _calexps(ids[:2], KEYS[:2])
    assert reg.import_dataset_columns(RUN, [first, coadds]) == 3
    # A repeat after an interruption: the first two are skipped, the rest registered.
    assert reg.import_dataset_columns(RUN, [_calexps(ids, KEYS), coadds]) == 2
    assert reg.import_dataset_columns(RUN, [_calexps(ids, KEYS), coadds]) == 0
    # A new type first, then registered ones: the all-at-once insert of the new rows is
    # rolled back when a later id exists, and the new dataset is registered once.
    coadd2_id = uuid.uuid4()
    coadds2 = DatasetColumns("deepCoadd", [coadd2_id.hex], [tuple(
        {"skymap": "rings", "tract": 9615, "patch": 0, "band": "g"}[d]
        for d in reg.get_dataset_type("deepCoadd").dimensions)],
        ["c2.fits"], ["fits"], ["ExposureF"], [8])  # fmt: skip
    assert reg.import_dataset_columns(RUN, [coadds2, _calexps(ids, KEYS)]) == 1
    assert reg.get_datastore_records([coadd2_id])[coadd2_id].path == "c2.fits"
    assert len(reg.query_datasets("deepCoadd", [RUN])) == 2
    refs = reg.query_datasets("calexp", [RUN])
    found = {
        r.id: (r.data_id["instrument"], r.data_id["visit"], r.data_id["detector"]) for r in refs
    }
    assert found == dict(zip(ids, KEYS, strict=True))
    records = reg.get_datastore_records(ids + [coadd_id])
    assert records[ids[3]] == DatastoreRecord(
        ids[3], f"{RUN}/calexp/2_1.fits", "fits_exposure", "ExposureF", 103
    )
    assert records[coadd_id].path == "c.fits" and len(records) == 5
    (coadd,) = [r for r in reg.query_datasets("deepCoadd", [RUN]) if r.id == coadd_id]
    assert coadd == DatasetRef(
        reg.get_dataset_type("deepCoadd"),
        DataCoordinate(reg.get_dataset_type("deepCoadd").dimensions, coadd_key),
        RUN,
        coadd_id,
    )


def test_conflicts_and_bad_input_are_refused_without_writing(reg: Registry) -> None:
    ids = [uuid.uuid4() for _ in KEYS]
    reg.import_dataset_columns(RUN, [_calexps(ids[:1], KEYS[:1])])
    reg.register_run("other")
    with pytest.raises(DatasetConflictError, match="another dataset type or in another RUN"):
        reg.import_dataset_columns("other", [_calexps(ids[:1], KEYS[:1])])
    with pytest.raises(DatasetConflictError, match="already registered with data ID"):
        reg.import_dataset_columns(RUN, [_calexps(ids[:1], KEYS[1:2])])
    with pytest.raises(DatasetConflictError, match="already exists in this collection"):
        reg.import_dataset_columns(RUN, [_calexps(ids[1:2], KEYS[:1])])
    with pytest.raises(DatasetConflictError, match="given twice"):
        reg.import_dataset_columns(RUN, [_calexps([ids[1], ids[1]], KEYS[1:3])])
    with pytest.raises(DimensionValueError, match="visit"):
        reg.import_dataset_columns(RUN, [_calexps(ids[1:2], [("HSC", 99, 0)])])
    with pytest.raises(ValueError, match="is not a UUID"):
        reg.import_dataset_columns(RUN, [DatasetColumns("calexp", ["nope"], [KEYS[1]])])
    with pytest.raises(ValueError, match="one value per dataset"):
        reg.import_dataset_columns(RUN, [DatasetColumns("calexp", [ids[1].hex], [])])
    # Nothing of the refused calls was written.
    assert [r.id for r in reg.query_datasets("calexp", [RUN])] == ids[:1]
    assert set(reg.get_datastore_records(ids)) == {ids[0]}


@pytest.mark.parametrize("rows_per_statement", [None, 1])
def test_types_sharing_a_tags_table_go_in_together_and_a_conflict_names_its_type(
    reg: Registry, monkeypatch: pytest.MonkeyPatch, rows_per_statement: int | None
) -> None:
    """calexp and src share one tags table: one insert of both; a conflict in one is named.

    With one row per SQLite statement the failing insert has written rows before the
    conflicting one; they are rolled back before the types are retried one by one.
    """
    if rows_per_statement is not None:
        monkeypatch.setattr(_bulk, "_SQLITE_VALUES", rows_per_statement)
    src = DatasetType("src", CALEXP.dimensions, "SourceCatalog")
    reg.register_dataset_type(src)
    assert reg.get_dataset_type("src").dimensions == CALEXP_DIMS
    calexp_ids, src_ids = [uuid.uuid4() for _ in KEYS], [uuid.uuid4() for _ in KEYS]
    src_ids[2] = uuid.UUID(int=2**128 - 1)  # the conflicting row sorts last: rows before it

    def srcs(ids: list[uuid.UUID], keys: list[tuple[object, ...]]) -> DatasetColumns:
        calexps = _calexps(ids, keys)
        return DatasetColumns("src", calexps.ids, calexps.data_ids)

    reg.import_dataset_columns(RUN, [srcs(src_ids[:1], KEYS[:1])])
    # Another src id for a data ID src already holds: refused, naming src; nothing written.
    with pytest.raises(DatasetConflictError, match="^src: a dataset already exists"):
        reg.import_dataset_columns(RUN, [_calexps(calexp_ids, KEYS), srcs(src_ids[2:3], KEYS[:1])])
    assert reg.query_datasets("calexp", [RUN]) == []
    assert (
        reg.import_dataset_columns(RUN, [_calexps(calexp_ids, KEYS), srcs(src_ids[1:], KEYS[1:])])
        == 2 * len(KEYS) - 1
    )
    for name, ids in (("calexp", calexp_ids), ("src", src_ids)):
        refs = reg.query_datasets(name, [RUN])
        assert sorted(r.id for r in refs) == sorted(ids)
