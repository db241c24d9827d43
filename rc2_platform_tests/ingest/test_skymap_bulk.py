"""Sky map registration through the columnar bulk path: same rows as the generic path."""

from __future__ import annotations

from pathlib import Path

import lsst.sphgeom as sg
import numpy as np
import pytest
import sqlalchemy as sa

from rc2_platform.butler import Butler
from rc2_platform.errors import DimensionValueError
from rc2_platform.geometry import decode_region
from rc2_platform.geometry import polygon_overlaps as _spatial
from rc2_platform.ingest import bootstrap, register_skymap
from rc2_platform.ingest.bootstrap_config import load_bootstrap_config
from rc2_platform.ingest.skymap import patch_pixel_overlaps
from rc2_platform.registry import Registry
from rc2_platform.simulate import SimulationResult
from rc2_platform.skymap import iter_patch_records, load_skymap

#: Polar cap, first ring, RA wrap-around of a ring, the RC2 tracts, the last tract.
TRACTS = [0, 1, 2, 9615, 9697, 9813, 18937]


def _rows(reg: Registry, table: sa.Table) -> set[tuple[object, ...]]:
    with reg.engine.connect() as conn:
        return {
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
            for r in conn.execute(sa.select(table))
        }


def test_grid_overlaps_equal_the_generic_polygon_test() -> None:
    sky = load_skymap("hsc_rings_v1")
    ring_ends = [int(t) for t in (1, 2, 3)] + [len(sky) - 2]
    ids = np.array(sorted(set(TRACTS + ring_ends)), dtype=np.int64)
    chunk = next(iter_patch_records(sky, ids, len(ids)))
    generic = _spatial.pixel_overlaps(_spatial.polygon_vertices(chunk.regions), 7)
    grid = patch_pixel_overlaps(sky, ids, 7)
    assert len(grid[0]) > len(chunk)
    assert np.array_equal(grid[0], generic[0]) and np.array_equal(grid[1], generic[1])
    # And against sphgeom itself for a few patches.
    pix = sg.HtmPixelization(7)
    for i in (0, 40, 80 * 3 + 7, len(chunk) - 1):
        region = decode_region(chunk.regions[i])
        expect = {p for lo, hi in pix.envelope(region) for p in range(lo, hi)
                  if region.overlaps(pix.pixel(p))}  # fmt: skip
        assert set(grid[1][grid[0] == i].tolist()) == expect


def _record_path(url: str) -> Registry:
    """The same tracts and patches through insert_dimension_records (per-region path)."""
    sky = load_skymap("hsc_rings_v1")
    reg = Registry.create(url)
    reg.insert_dimension_records("skymap", [{"skymap": "hsc_rings_v1"}])
    reg.insert_dimension_records(
        "tract", [{"skymap": "hsc_rings_v1", "tract": t, "region": sky.tract(t).inner_region}
                  for t in TRACTS])  # fmt: skip
    chunk = next(iter_patch_records(sky, np.array(TRACTS), len(TRACTS)))
    reg.insert_dimension_records(
        "patch",
        [
            {"skymap": "hsc_rings_v1", "tract": int(t), "patch": int(p), "cell_x": int(x),
             "cell_y": int(y), "region": decode_region(g)}
            for t, p, x, y, g in zip(chunk.tract, chunk.patch, chunk.cell_x, chunk.cell_y,
                                     chunk.regions, strict=True)
        ],
    )  # fmt: skip
    return reg


def test_bulk_registration_matches_the_record_path(db_url: str, tmp_path: Path) -> None:
    butler = Butler.create(tmp_path / "repo", db_url)
    reference = None
    try:
        result = register_skymap(butler, "hsc_rings_v1", tracts=TRACTS)
        assert result.ingested == len(TRACTS) * 82 + 1
        reg = butler.registry
        ovl, patch = reg.schema.overlaps["ovl_patch_htm7"], reg.schema.elements["patch"]
        # Deferred indexes (and PostgreSQL foreign keys) are back after the load.
        with reg.engine.connect() as conn:
            insp = sa.inspect(conn)
            assert {i["name"] for i in insp.get_indexes("ovl_patch_htm7")} >= {
                i.name for i in ovl.indexes
            }
            assert len(insp.get_foreign_keys("patch")) == len(patch.foreign_key_constraints)
        # A reference SQLite database filled through the generic record path.
        reference = _record_path(f"sqlite:///{tmp_path / 'reference.sqlite3'}")
        assert _rows(reg, ovl) == _rows(reference, reference.schema.overlaps["ovl_patch_htm7"])
        assert _rows(reg, patch) == _rows(reference, reference.schema.elements["patch"])
        # Re-running skips everything; more tracts are added to the now non-empty tables.
        again = register_skymap(butler, "hsc_rings_v1", tracts=[*TRACTS, 3])
        assert again.ingested == 82 and again.skipped == len(TRACTS) * 82 + 1
    finally:
        butler.close()
        if reference is not None:
            reference.close()


def test_bulk_stream_failure_rolls_back_rows_and_index_changes(db_url: str, tmp_path: Path) -> None:
    reg = Registry.create(db_url)
    try:
        sky = load_skymap("hsc_rings_v1")
        reg.insert_dimension_records("skymap", [{"skymap": "s"}])
        reg.insert_dimension_records("tract", [{"skymap": "s", "tract": 0}])
        good, bad = (next(iter_patch_records(sky, [t], 1)) for t in (0, 1))

        def chunks():  # the second chunk refers to tract 1, which is not registered
            for c in (good, bad):
                yield {"skymap": "s", "tract": c.tract, "patch": c.patch, "region": c.regions}

        with pytest.raises(DimensionValueError, match="unknown tract"):
            reg.insert_dimension_columns("patch", chunks())
        assert reg.query_dimension_records("patch", "skymap = 's'") == []
        with reg.engine.connect() as conn:
            names = {i["name"] for i in sa.inspect(conn).get_indexes("ovl_patch_htm7")}
        assert names >= {i.name for i in reg.schema.overlaps["ovl_patch_htm7"].indexes}
        # Duplicated keys inside one chunk are reported, not half-written.
        dup = {"skymap": "s", "tract": np.zeros(2, np.int64), "patch": np.zeros(2, np.int64),
               "region": good.regions[:2]}  # fmt: skip
        with pytest.raises(Exception, match="twice"):
            reg.insert_dimension_columns("patch", [dup])
        assert reg.insert_dimension_columns("patch", [{
            "skymap": "s", "tract": good.tract, "patch": good.patch, "region": good.regions
        }]) == 81  # fmt: skip
    finally:
        reg.close()


def test_skymap_registered_after_visits_gets_visit_overlaps(
    tiny_survey: SimulationResult, tmp_path: Path
) -> None:
    config = load_bootstrap_config(tiny_survey.bootstrap)
    repo = tmp_path / "repo"
    bootstrap(tiny_survey.bootstrap, repo, progress=False)
    butler = Butler(repo)
    try:
        tracts = config.tracts
        register_skymap(butler, "copy", config.skymap.config, tracts=tracts)
        table = butler.registry.schema.overlaps["ovl_vdr_patch"]
        rows = _rows(butler.registry, table)
        by_map = {m: {r[:3] + r[4:] for r in rows if r[3] == m}
                  for m in (config.skymap.name, "copy")}  # fmt: skip
        assert by_map["copy"] and by_map["copy"] == by_map[config.skymap.name]
    finally:
        butler.close()
