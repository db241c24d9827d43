"""Registry methods other layers use instead of SQL, and universe semantics from config."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import yaml

from rc2_platform.core import DatastoreRecord
from rc2_platform.errors import DimensionError
from rc2_platform.registry import DatasetType, DimensionUniverse, Registry
from rc2_platform_tests.registry.test_registry import populate

CALEXP = DatasetType("calexp", ("instrument", "visit", "detector"), "ExposureF")


@pytest.fixture
def reg(db_url: str) -> Iterator[Registry]:
    registry = Registry.create(db_url)
    populate(registry)
    yield registry
    registry.close()


def test_record_keys_overlaps_and_counts(reg: Registry) -> None:
    assert reg.query_record_keys("patch", ["tract"], skymap="rings") == {(9615,)}
    assert reg.query_record_keys("patch", ["tract"], skymap="other") == set()
    assert reg.query_record_keys("skymap", ["skymap"]) == {("rings",)}
    pairs = reg.query_overlaps("visit_detector_region", "patch", ["visit", "detector", "patch"])
    assert pairs == {(1, 0, 0), (2, 1, 1)}
    assert reg.count_dimension_records("visit_detector_region") == 4
    with pytest.raises(DimensionError, match="no materialized overlap"):
        reg.query_overlaps("visit", "patch", ["visit"])
    with pytest.raises(DimensionError, match="no column"):
        reg.query_record_keys("patch", ["nonsense"])


def test_datastore_records_commit_and_roll_back_with_the_datasets(reg: Registry) -> None:
    reg.register_dataset_type(CALEXP)
    reg.register_run("run")
    (ref,) = reg.insert_datasets(CALEXP, [{"instrument": "HSC", "visit": 1, "detector": 0}], "run")
    record = DatastoreRecord(ref.id, "run/calexp/1.fits", "FitsFormatter", "ExposureF", 123)
    reg.insert_datastore_records([record])
    assert reg.get_datastore_records([ref]) == {ref.id: record}
    with pytest.raises(RuntimeError), reg.transaction():
        (other,) = reg.insert_datasets(
            CALEXP, [{"instrument": "HSC", "visit": 2, "detector": 0}], "run"
        )
        reg.insert_datastore_records(
            [DatastoreRecord(other.id, "x.fits", "FitsFormatter", "ExposureF", 1)]
        )
        raise RuntimeError("abort")
    assert reg.get_datastore_records([other.id, uuid.uuid4()]) == {}
    reg.remove_datasets([ref])
    assert reg.get_datastore_records([ref]) == {}


def _as_version_1(universe: DimensionUniverse) -> DimensionUniverse:
    data = yaml.safe_load(universe.to_yaml())
    data["version"] = 1
    del data["spatial_families"]
    for element in data["elements"]:
        element.pop("always_join")
    return DimensionUniverse.from_yaml(yaml.safe_dump(data))


def test_a_version_1_universe_keeps_its_query_semantics(db_url: str) -> None:
    current = DimensionUniverse.default()
    old = _as_version_1(current)
    assert old["visit_definition"].always_join
    for name in ("visit", "visit_detector_region", "tract", "patch", "htm7"):
        assert old.spatial_family(name) == current.spatial_family(name)
    reg = Registry.create(db_url, universe=old)
    try:
        populate(reg)
        ids = reg.query_data_ids(["visit", "detector", "patch"])
        assert {(d["visit"], d["detector"], d["patch"]) for d in ids} == {(1, 0, 0), (2, 1, 1)}
    finally:
        reg.close()


def test_spatial_families_must_name_spatial_elements() -> None:
    data = yaml.safe_load(DimensionUniverse.default().to_yaml())
    data["spatial_families"]["visit"].append("detector")
    with pytest.raises(Exception, match="not a spatial element"):
        DimensionUniverse.from_yaml(yaml.safe_dump(data))
