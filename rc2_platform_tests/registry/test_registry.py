"""Registry behaviour on SQLite, PostgreSQL and MariaDB (one suite, ``db_url`` fixture)."""

from __future__ import annotations

import re

import lsst.sphgeom as sg
import pytest
import sqlalchemy as sa

from rc2_platform.errors import (
    CalibrationConflictError,
    CollectionCycleError,
    CollectionTypeError,
    ConflictingDefinitionError,
    DatasetConflictError,
    DimensionError,
    DimensionValueError,
    ExpressionError,
    MissingCollectionError,
    MissingDatasetTypeError,
    SchemaVersionError,
)
from rc2_platform.registry import (
    CollectionType,
    DatasetIdGenMode,
    DatasetRef,
    DatasetType,
    DimensionUniverse,
    Registry,
    Timespan,
)
from rc2_platform.registry.schema import SCHEMA_VERSION
from rc2_platform_tests.registry_fixtures import insert_visits_and_patches

CALEXP = DatasetType("calexp", ("instrument", "visit", "detector"), "ExposureF")
BIAS = DatasetType("bias", ("instrument", "detector"), "ExposureF", is_calibration=True)


def populate(reg: Registry) -> None:
    """Two visits and a 1-tract, 2-patch sky map (:func:`insert_visits_and_patches`)."""
    insert_visits_and_patches(reg)


@pytest.fixture
def reg(db_url: str) -> Registry:
    registry = Registry.create(db_url)
    populate(registry)
    yield registry
    registry.close()


def count(reg: Registry, table: str) -> int:
    with reg.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


# --- universe ---------------------------------------------------------------------------


def test_universe_expands_required_and_implied_dimensions() -> None:
    u = DimensionUniverse.default()
    assert u.required(["visit", "detector"]) == ("instrument", "detector", "visit")
    assert set(u.implied(["visit"])) == {"physical_filter", "band", "day_obs"}
    assert u["patch"].required == ("skymap", "tract", "patch")


def test_data_id_validation_names_the_problem() -> None:
    u = DimensionUniverse.default()
    with pytest.raises(DimensionError, match="unknown dimension"):
        u.data_id({"instrument": "HSC", "vist": 1})
    with pytest.raises(DimensionValueError, match="'visit' must be an integer"):
        u.data_id({"instrument": "HSC", "visit": "one"})
    with pytest.raises(DimensionError, match="lacks"):
        u.data_id({"visit": 1}, ["visit"])


# --- records and overlaps ---------------------------------------------------------------


def test_overlaps_match_hand_computed_pairs(reg: Registry) -> None:
    ids = reg.query_data_ids(["visit", "detector", "patch"])
    pairs = {(d["visit"], d["detector"], d["patch"]) for d in ids}
    assert pairs == {(1, 0, 0), (2, 1, 1)}
    assert {d["visit"] for d in reg.query_data_ids(["visit", "tract"])} == {1, 2}
    htm = reg.query_data_ids(["patch", "htm7"], where="patch = 0")
    assert htm and all(sg.HtmPixelization.level(d["htm7"]) == 7 for d in htm)


def test_sync_dimension_record_is_idempotent_and_detects_conflicts(reg: Registry) -> None:
    rec = {"instrument": "HSC", "detector": 5, "full_name": "1_53"}
    assert reg.sync_dimension_record("detector", rec) is True
    assert reg.sync_dimension_record("detector", rec) is False
    with pytest.raises(ConflictingDefinitionError, match="full_name"):
        reg.sync_dimension_record("detector", dict(rec, full_name="0_00"))


def test_insert_records_skip_existing_and_bad_references(reg: Registry) -> None:
    assert (
        reg.insert_dimension_records("band", [{"band": "g"}, {"band": "i"}], skip_existing=True)
        == 1
    )
    with pytest.raises(ConflictingDefinitionError, match="already exists"):
        reg.insert_dimension_records("band", [{"band": "g"}])
    before = count(reg, "physical_filter")
    with pytest.raises(DimensionValueError, match="band"):
        reg.insert_dimension_records(
            "physical_filter",
            [{"instrument": "HSC", "physical_filter": "HSC-Z", "band": "z"}],
        )
    assert count(reg, "physical_filter") == before


def test_query_dimension_records_with_where(reg: Registry) -> None:
    recs = reg.query_dimension_records("visit", where="band = 'r'")
    assert [r["visit"] for r in recs] == [2]
    assert recs[0]["timespan"] == Timespan(200, 230)
    assert isinstance(recs[0]["region"], sg.ConvexPolygon)
    with pytest.raises(ExpressionError, match="nosuch"):
        reg.query_dimension_records("visit", where="nosuch = 3")


# --- collections ------------------------------------------------------------------------


def test_chains_flatten_in_order_and_reject_cycles(reg: Registry) -> None:
    for name in ("a", "b", "c"):
        reg.register_run(name)
    reg.register_collection("inner", CollectionType.CHAINED)
    reg.register_collection("outer", CollectionType.CHAINED)
    reg.set_collection_chain("inner", ["b", "a"])
    reg.set_collection_chain("outer", ["c", "inner", "a"])
    assert reg.flatten_collections("outer") == ["c", "b", "a"]
    assert reg.get_collection_chain("outer") == ["c", "inner", "a"]
    with pytest.raises(CollectionCycleError):
        reg.set_collection_chain("inner", ["outer"])
    assert reg.get_collection_chain("inner") == ["b", "a"]
    assert reg.query_collections("?", types=[CollectionType.RUN]) == ["a", "b", "c"]
    with pytest.raises(MissingCollectionError):
        reg.set_collection_chain("outer", ["nope"])


# --- dataset types and datasets ---------------------------------------------------------


def test_dataset_type_conflicts(reg: Registry) -> None:
    assert reg.register_dataset_type(CALEXP) is True
    assert reg.register_dataset_type(CALEXP) is False
    with pytest.raises(ConflictingDefinitionError, match="calexp"):
        reg.register_dataset_type(DatasetType("calexp", ("instrument", "visit"), "ExposureF"))
    with pytest.raises(MissingDatasetTypeError):
        reg.get_dataset_type("nope")


def test_query_datasets_joins_a_dimension_the_type_lacks_through_the_data_id_graph(
    reg: Registry,
) -> None:
    """A where on a dimension the type lacks is a join, as in LSST's query-datasets:
    ``visit = 1`` relates a deepCoadd's band to the visit's physical_filter (band g only,
    the same data IDs query_data_ids gives; both bands before) and the visit's detector
    regions to the patches (patch 0 only: visit 1 lies 10 degrees from patch 1, which the
    coarser visit x tract overlap matched), with ``detector`` that detector's region; a
    bias (instrument, detector) joined to several visits is found once (each bias twice
    before)."""
    reg.register_dataset_type(DatasetType("deepCoadd", ("skymap", "tract", "patch", "band"), "F"))
    reg.register_dataset_type(BIAS)
    reg.register_run("r")
    coadds = [
        {"skymap": "rings", "tract": 9615, "patch": p, "band": b} for p in (0, 1) for b in "gr"
    ]
    reg.insert_datasets("deepCoadd", coadds, "r")
    reg.insert_datasets("bias", [{"instrument": "HSC", "detector": d} for d in (0, 1)], "r")

    def found(dataset_type: str, where: str) -> list[tuple[object, ...]]:
        refs = reg.query_datasets(dataset_type, "r", where, find_first=False)
        return sorted(tuple(r.data_id.values()) for r in refs)

    assert found("deepCoadd", "visit = 1") == [("g", "rings", 9615, 0)]
    assert found("deepCoadd", "visit = 1") == sorted(
        tuple(d.values()) for d in reg.query_data_ids(["patch", "band"], "visit = 1")
    )
    assert found("deepCoadd", "visit = 2 AND detector = 1") == [("r", "rings", 9615, 1)]
    assert found("bias", "visit IN (1, 2)") == [("HSC", 0), ("HSC", 1)]
    assert found("bias", "visit = 1 AND detector = 1") == [("HSC", 1)]


def test_find_first_over_two_collections(reg: Registry) -> None:
    reg.register_dataset_type(CALEXP)
    reg.register_run("old")
    reg.register_run("new")
    reg.register_collection("chain", CollectionType.CHAINED)
    reg.set_collection_chain("chain", ["new", "old"])
    all_ids = [{"instrument": "HSC", "visit": v, "detector": d} for v in (1, 2) for d in (0, 1)]
    reg.insert_datasets("calexp", all_ids, "old")
    newer = reg.insert_datasets("calexp", all_ids[:1], "new")
    found = reg.find_datasets("calexp", "chain")
    assert len(found) == 4
    assert found[newer[0].data_id].run == "new"
    assert sorted(r.run for r in found.values()) == ["new", "old", "old", "old"]
    subset = reg.find_datasets("calexp", "chain", data_ids=all_ids[1:3])
    assert {r.run for r in subset.values()} == {"old"} and len(subset) == 2
    assert reg.find_dataset("calexp", all_ids[0], "chain") == newer[0]
    assert (
        reg.find_dataset("calexp", {"instrument": "HSC", "visit": 9, "detector": 0}, "chain")
        is None
    )
    assert len(reg.query_datasets("calexp", "chain", where="band = 'g'")) == 2
    assert len(reg.query_datasets("calexp", "chain", find_first=False)) == 5
    assert reg.get_dataset(newer[0].id) == newer[0]
    assert len(reg.query_data_ids(["visit"], datasets=["calexp"], collections="new")) == 1


def test_insert_conflicts_and_bad_data_ids_write_nothing(reg: Registry) -> None:
    reg.register_dataset_type(CALEXP)
    reg.register_run("run")
    good = {"instrument": "HSC", "visit": 1, "detector": 0}
    reg.insert_datasets("calexp", [good], "run")
    with pytest.raises(DatasetConflictError, match="calexp"):
        reg.insert_datasets(
            "calexp", [{"instrument": "HSC", "visit": 2, "detector": 0}, good], "run"
        )
    with pytest.raises(DimensionValueError, match="visit"):
        reg.insert_datasets(
            "calexp",
            [
                {"instrument": "HSC", "visit": 2, "detector": 1},
                {"instrument": "HSC", "visit": 77, "detector": 0},
            ],
            "run",
        )
    with pytest.raises(DimensionValueError, match="integer"):
        reg.insert_datasets("calexp", [{"instrument": "HSC", "visit": "x", "detector": 0}], "run")
    assert count(reg, "dataset") == 1
    reg.register_collection("chain", CollectionType.CHAINED)
    with pytest.raises(CollectionTypeError, match="CHAINED"):
        reg.insert_datasets("calexp", [good], "chain")


def test_deterministic_ids_reimport_is_a_no_op(reg: Registry) -> None:
    reg.register_dataset_type(CALEXP)
    reg.register_run("run")
    ids = [{"instrument": "HSC", "visit": 1, "detector": d} for d in (0, 1)]
    refs = reg.insert_datasets("calexp", ids, "run", id_mode=DatasetIdGenMode.DATAID_TYPE_RUN)
    again = [
        DatasetRef.make(refs[0].dataset_type, r.data_id, "run", DatasetIdGenMode.DATAID_TYPE_RUN)
        for r in refs
    ]
    assert [r.id for r in again] == [r.id for r in refs]
    assert reg.import_datasets(again) == []
    assert count(reg, "dataset") == 2
    reg.remove_datasets(refs[:1])
    assert count(reg, "dataset") == 1


def test_tagged_collections(reg: Registry) -> None:
    reg.register_dataset_type(CALEXP)
    reg.register_run("run")
    reg.register_collection("best", CollectionType.TAGGED)
    refs = reg.insert_datasets(
        "calexp", [{"instrument": "HSC", "visit": 1, "detector": d} for d in (0, 1)], "run"
    )
    reg.associate("best", refs[:1])
    assert list(reg.find_datasets("calexp", "best").values()) == refs[:1]
    reg.disassociate("best", refs[:1])
    assert reg.find_datasets("calexp", "best") == {}


def test_certify_decertify_and_calibration_lookup(reg: Registry) -> None:
    reg.register_dataset_type(BIAS)
    reg.register_run("calib/run")
    reg.register_collection("calib", CollectionType.CALIBRATION)
    reg.register_run("calib/run2")
    a = reg.insert_datasets("bias", [{"instrument": "HSC", "detector": 0}], "calib/run")[0]
    b = reg.insert_datasets("bias", [{"instrument": "HSC", "detector": 0}], "calib/run2")[0]
    reg.certify("calib", [a], Timespan(0, 150))
    with pytest.raises(CalibrationConflictError, match="overlaps"):
        reg.certify("calib", [b], Timespan(100, 300))
    reg.certify("calib", [b], Timespan(150, 300))
    visit1 = {"instrument": "HSC", "visit": 1, "detector": 0}
    found = reg.find_calibrations(
        "bias", ["calib"], [(visit1, Timespan(100, 130)), (visit1, Timespan(200, 230))]
    )
    assert [r.id for r in found.values()] == [a.id, b.id]
    assert reg.find_dataset("bias", visit1, "calib", timespan=Timespan(200, 230)) == b
    assert reg.decertify("calib", "bias", Timespan(50, 250)) == 2
    assert reg.find_dataset("bias", visit1, "calib", timespan=Timespan(100, 130)) is None
    assert reg.find_dataset("bias", visit1, "calib", timespan=Timespan(10, 20)) == a
    with pytest.raises(CollectionTypeError):
        reg.certify("calib/run", [a], Timespan(0, 1))


# --- schema -----------------------------------------------------------------------------


def test_schema_version_mismatch_and_reopen(reg: Registry, db_url: str) -> None:
    reopened = Registry.open(db_url)
    assert reopened.universe.digest == reg.universe.digest
    reopened.close()
    with reg.engine.begin() as conn:
        conn.execute(sa.text("UPDATE rc2_meta SET value = '0.1' WHERE name = 'schema_version'"))
    with pytest.raises(SchemaVersionError, match=r"0\.1.*" + re.escape(SCHEMA_VERSION)):
        Registry.open(db_url)
