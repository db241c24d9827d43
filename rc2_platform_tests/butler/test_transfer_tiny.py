"""A processed ``tiny`` tract moved from SQLite to PostgreSQL answers every query the same.

The demo (simulate, bootstrap, graph, execution of 438 quanta) runs once; the whole
repository is transferred to a PostgreSQL repository and exported/imported into a
MariaDB one, and the same queries are asked of all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rc2_platform.butler import Butler
from rc2_platform.butler_transfer import export_datasets, import_datasets, transfer_datasets
from rc2_platform.cli import main
from rc2_platform_tests.databases import scratch_database

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's repository after its whole run (SQLite)."""
    root = tmp_path_factory.mktemp("processed") / "demo"
    result = CliRunner().invoke(main, ["demo", str(root), "--jobs", "2"])
    assert result.exit_code == 0, result.output
    return root / "repo"


def answers(butler: Butler) -> dict[str, Any]:
    """Datasets of every type in every collection, spatial data IDs, calibrations."""
    reg = butler.registry
    out: dict[str, Any] = {"collections": sorted(reg.query_collections())}
    for dt in reg.query_dataset_types():
        refs = reg.query_datasets(dt, out["collections"], find_first=False)
        out[dt.name] = sorted({(str(r.id), r.run, tuple(r.data_id.items())) for r in refs})
    # Only the records the datasets need move: ask spatial questions about their patches.
    patches = sorted(
        {r.data_id["patch"] for r in reg.query_datasets("deepCoadd", out["collections"])}
    )
    where = f"patch IN ({', '.join(map(str, patches))})"
    out["detector_patch_overlaps"] = sorted(
        tuple(d.items()) for d in reg.query_data_ids(["visit", "detector", "patch"], where)
    )
    out["records"] = {
        el: sorted(
            tuple((k, v) for k, v in rec.items() if k not in ("region", "timespan"))
            for rec in reg.query_dimension_records(el)
        )
        for el in (
            "visit",
            "exposure",
            "visit_detector_region",
            "visit_definition",
        )
    }
    return out


@pytest.fixture
def pg_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    with scratch_database("postgresql", tmp_path) as url:
        yield tmp_path / "pg", url


def test_processed_tract_transfers_to_postgresql_with_the_same_answers(
    processed: Path, pg_root: tuple[Path, str]
) -> None:
    root, url = pg_root
    with Butler(processed) as src, Butler.create(root, url) as dest:
        collections = src.registry.query_collections()
        report = transfer_datasets(src, dest, collections)
        assert report.new_datasets == report.counts["datasets"] > 1000
        assert answers(dest) == answers(src)
        coadd = src.registry.query_datasets("deepCoadd_forced_src", collections)[0]
        src_file = src.datastore.absolute(src.datastore_records([coadd])[coadd.id])
        dest_file = dest.datastore.absolute(dest.datastore_records([coadd])[coadd.id])
        assert dest_file != src_file and dest_file.read_bytes() == src_file.read_bytes()
        assert transfer_datasets(src, dest, collections).new_datasets == 0


def test_processed_tract_exports_and_imports_into_mariadb(processed: Path, tmp_path: Path) -> None:
    with scratch_database("mariadb", tmp_path) as url, Butler(processed) as src:
        collections = src.registry.query_collections()
        export_datasets(src, tmp_path / "tiny.yaml", collections, with_files=tmp_path / "files")
        with Butler.create(tmp_path / "maria", url) as dest:
            import_datasets(dest, tmp_path / "tiny.yaml", transfer="link")
            assert answers(dest) == answers(src)
