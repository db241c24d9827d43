"""Fixtures of the butler tests: a small populated repository on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from rc2_platform.butler import Butler
from rc2_platform.registry import DatasetType, Registry
from rc2_platform_tests.registry_fixtures import insert_two_visits

CALEXP = DatasetType("calexp", ("instrument", "visit", "detector"), "Exposure")
SRC = DatasetType("src", ("instrument", "visit", "detector"), "SourceCatalog")
SUMMARY = DatasetType("summary", ("instrument", "visit", "detector"), "StructuredDataDict")
BAND_CFG = DatasetType("band_cfg", ("band",), "StructuredDataDict")
FILTER_CFG = DatasetType("filter_cfg", ("instrument", "physical_filter"), "StructuredDataDict")
ALL_TYPES = (CALEXP, SRC, SUMMARY, BAND_CFG, FILTER_CFG)
RUN = "HSC/runs/test"

#: Files the repository holds besides datasets.
_NOT_DATASETS = {"butler.yaml", "registry.sqlite3", "registry.sqlite3-wal", "registry.sqlite3-shm"}


def populate(reg: Registry) -> None:
    """Instrument HSC, bands g/r, detectors 0/1, visits 1 (g) and 2 (r), the dataset types."""
    insert_two_visits(reg)
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
