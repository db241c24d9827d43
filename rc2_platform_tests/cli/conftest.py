"""A small SQLite repository for the command-line tests: wide names, integer detectors."""

from __future__ import annotations

from pathlib import Path

import pytest

from rc2_platform.butler import Butler
from rc2_platform.core import DatasetType
from rc2_platform.core.timespan import Timespan
from rc2_platform_tests.registry_fixtures import box

#: A dataset type name longer than an 80-column table leaves room for.
LONG_TYPE = "characterizeImage_" + "very_long_metadata_name_" * 3 + "summary"
#: Detectors whose text order (30, 31, 7, 8, 9) differs from their numeric order.
DETECTORS = (30, 31, 7, 8, 9)
RUN = "u/someone/a_rather_long_run_collection_name/20250101T000000Z"


def _populate(butler: Butler) -> None:
    reg = butler.registry
    reg.insert_dimension_records("instrument", [{"instrument": "HSC"}])
    reg.insert_dimension_records("band", [{"band": "g"}])
    reg.insert_dimension_records(
        "physical_filter", [{"instrument": "HSC", "physical_filter": "HSC-G", "band": "g"}]
    )
    reg.insert_dimension_records(
        "detector", [{"instrument": "HSC", "detector": d} for d in DETECTORS]
    )
    reg.insert_dimension_records("day_obs", [{"instrument": "HSC", "day_obs": 20200101}])
    reg.insert_dimension_records(
        "visit",
        [
            {
                "instrument": "HSC",
                "visit": v,
                "physical_filter": "HSC-G",
                "day_obs": 20200101,
                "exposure_time": 30.0,
                "region": box(v, 0, 1),
                "timespan": Timespan(v * 100, v * 100 + 30),
            }
            for v in (100, 20)
        ],
    )
    dims = ("instrument", "visit", "detector")
    for name in (LONG_TYPE, "summary"):
        reg.register_dataset_type(DatasetType(name, dims, "StructuredDataDict"))
    reg.register_run(RUN)
    for visit in (100, 20):
        for detector in DETECTORS:
            data_id = {"instrument": "HSC", "visit": visit, "detector": detector}
            butler.put({"d": detector}, LONG_TYPE, data_id, run=RUN)


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite repository with 10 datasets of a long-named type over detectors 7-31."""
    root = tmp_path_factory.mktemp("cli") / "repo"
    with Butler.create(root) as butler:
        _populate(butler)
    return root
