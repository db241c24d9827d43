"""Fixtures of the butler tests: a small populated repository on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lsst.sphgeom as sg
import pytest
import sqlalchemy as sa

from rc2_platform.butler import Butler
from rc2_platform.registry import DatasetType, Registry, Timespan

CALEXP = DatasetType("calexp", ("instrument", "visit", "detector"), "Exposure")
SRC = DatasetType("src", ("instrument", "visit", "detector"), "SourceCatalog")
SUMMARY = DatasetType("summary", ("instrument", "visit", "detector"), "StructuredDataDict")
BAND_CFG = DatasetType("band_cfg", ("band",), "StructuredDataDict")
FILTER_CFG = DatasetType("filter_cfg", ("instrument", "physical_filter"), "StructuredDataDict")
ALL_TYPES = (CALEXP, SRC, SUMMARY, BAND_CFG, FILTER_CFG)
RUN = "HSC/runs/test"

#: Files the repository holds besides datasets.
_NOT_DATASETS = {"butler.yaml", "registry.sqlite3", "registry.sqlite3-wal", "registry.sqlite3-shm"}


def box(ra: float, dec: float, w: float) -> sg.ConvexPolygon:
    """A small spherical quadrilateral with lower-left corner (ra, dec) in degrees."""
    corners = [(ra, dec), (ra + w, dec), (ra + w, dec + w), (ra, dec + w)]
    return sg.ConvexPolygon([sg.UnitVector3d(sg.LonLat.fromDegrees(a, b)) for a, b in corners])


def populate(reg: Registry) -> None:
    """Instrument HSC, bands g/r, detectors 0/1, visits 1 (g) and 2 (r), the dataset types."""
    reg.insert_dimension_records("instrument", [{"instrument": "HSC"}])
    reg.insert_dimension_records("band", [{"band": "g"}, {"band": "r"}])
    reg.insert_dimension_records(
        "physical_filter",
        [
            {"instrument": "HSC", "physical_filter": "HSC-G", "band": "g"},
            {"instrument": "HSC", "physical_filter": "HSC-R", "band": "r"},
        ],
    )
    reg.insert_dimension_records("detector", [{"instrument": "HSC", "detector": d} for d in (0, 1)])
    reg.insert_dimension_records("day_obs", [{"instrument": "HSC", "day_obs": 20200101}])
    reg.insert_dimension_records(
        "visit",
        [
            {
                "instrument": "HSC",
                "visit": v,
                "physical_filter": f,
                "day_obs": 20200101,
                "exposure_time": 30.0,
                "region": box(ra, 0, 1),
                "timespan": Timespan(v * 100, v * 100 + 30),
            }
            for v, f, ra in ((1, "HSC-G", 0.0), (2, "HSC-R", 10.0))
        ],
    )
    for dt in ALL_TYPES:
        reg.register_dataset_type(dt)
    reg.register_run(RUN)


@pytest.fixture
def butler(db_url: str, tmp_path: Path) -> Iterator[Butler]:
    """A populated repository in ``tmp_path/repo`` (SQLite inside it, or the server DB)."""
    url = None if db_url.startswith("sqlite") else db_url
    b = Butler.create(tmp_path / "repo", registry_url=url)
    populate(b.registry)
    b.run = RUN
    b.collections = [RUN]
    yield b
    b.close()


def count_rows(butler: Butler, table: str) -> int:
    """Rows in a registry table."""
    with butler.registry.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def dataset_files(root: Path) -> list[Path]:
    """Every file (or link) under the repository that is not config or the SQLite registry."""
    return sorted(
        p
        for p in root.rglob("*")
        if (p.is_file() or p.is_symlink()) and p.name not in _NOT_DATASETS
    )


def snapshot(butler: Butler) -> tuple[int, int, int, list[Path]]:
    """(datasets, file records, collections, files): what a failed write must leave unchanged."""
    return (
        count_rows(butler, "dataset"),
        count_rows(butler, "file_datastore_records"),
        count_rows(butler, "collection"),
        dataset_files(butler.root),
    )
