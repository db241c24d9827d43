"""Vectorized overlaps agree with sphgeom; the columnar insert path matches the record path."""

from __future__ import annotations

import lsst.sphgeom as sg
import numpy as np
import pytest
import sqlalchemy as sa

from rc2_platform.errors import DimensionError, DimensionValueError
from rc2_platform.geometry import decode_region, encode_quads, lonlat_to_vectors
from rc2_platform.geometry import polygon_overlaps as _spatial
from rc2_platform.registry import Registry


def _quads(n: int, seed: int, width: float = 0.6) -> list[bytes]:
    rng = np.random.default_rng(seed)
    ra, dec = rng.uniform(0, 360, n), rng.uniform(-80, 80, n)
    w = rng.uniform(0.05, width, n)
    dra = w / np.cos(np.radians(dec))
    return encode_quads(
        lonlat_to_vectors(
            np.stack([ra, ra + dra, ra + dra, ra], 1), np.stack([dec, dec, dec + w, dec + w], 1)
        )
    )


def test_trixels_match_sphgeom() -> None:
    verts, ids = _spatial.trixels(7)
    pix = sg.HtmPixelization(7)
    for j in (0, 4097, 131071):
        expect = [[v.x(), v.y(), v.z()] for v in pix.triangle(int(ids[j])).getVertices()]
        assert np.allclose(verts[j], expect)


def test_pixel_overlaps_match_sphgeom() -> None:
    blobs = _quads(400, 1)
    idx, pixels = _spatial.pixel_overlaps(_spatial.polygon_vertices(blobs), 7)
    pix = sg.HtmPixelization(7)
    expect = set()
    for i, b in enumerate(blobs):
        region = decode_region(b)
        for lo, hi in pix.envelope(region):
            expect.update((i, p) for p in range(lo, hi) if region.overlaps(pix.pixel(p)))
    assert set(zip(idx.tolist(), pixels.tolist(), strict=True)) == expect


def test_region_overlaps_match_sphgeom() -> None:
    a, b = _quads(300, 2, 3.0), _quads(300, 3, 3.0)
    ia, ib = _spatial.region_overlaps(_spatial.polygon_vertices(a), _spatial.polygon_vertices(b))
    ra, rb = [decode_region(x) for x in a], [decode_region(x) for x in b]
    expect = {(i, j) for i in range(300) for j in range(300) if ra[i].overlaps(rb[j])}
    assert expect and set(zip(ia.tolist(), ib.tolist(), strict=True)) == expect


def test_non_polygon_regions_are_not_vectorized() -> None:
    circle = bytes(sg.Circle(sg.UnitVector3d(1, 0, 0), sg.Angle.fromDegrees(1)).encode())
    assert _spatial.polygon_vertices([circle]) is None


def _overlap_rows(reg: Registry, table: str) -> set[tuple[object, ...]]:
    with reg.engine.connect() as conn:
        return {tuple(r) for r in conn.execute(sa.select(reg.schema.overlaps[table]))}


def test_columnar_insert_matches_record_insert(db_url: str, tmp_path: object) -> None:
    reg = Registry.create(db_url)
    try:
        blobs = _quads(60, 4, 1.0)
        reg.insert_dimension_records("skymap", [{"skymap": "a"}, {"skymap": "b"}])
        reg.insert_dimension_records("tract", [{"skymap": s, "tract": 0} for s in ("a", "b")])
        # Record path with Region objects on skymap a; columnar bytes on skymap b.
        reg.insert_dimension_records(
            "patch",
            [
                {"skymap": "a", "tract": 0, "patch": i, "region": decode_region(b)}
                for i, b in enumerate(blobs)
            ],
        )
        n = reg.insert_dimension_columns(
            "patch",
            {"skymap": "b", "tract": np.zeros(60, np.int64), "patch": np.arange(60),
             "region": blobs},
        )  # fmt: skip
        assert n == 60
        rows = _overlap_rows(reg, "ovl_patch_htm7")
        by_map = {m: {r[1:] for r in rows if r[0] == m} for m in ("a", "b")}
        assert by_map["a"] and by_map["a"] == by_map["b"]
        # skip_existing inserts nothing twice; bad input names the problem.
        assert reg.insert_dimension_columns(
            "patch", {"skymap": "b", "tract": [0], "patch": [0], "region": [blobs[0]]},
            skip_existing=True,
        ) == 0  # fmt: skip
        with pytest.raises(DimensionError, match="unknown"):
            reg.insert_dimension_columns("patch", {"skymap": "b", "tract": [0], "patch": [99],
                                                   "colour": [1]})  # fmt: skip
        with pytest.raises(DimensionValueError, match="region"):
            reg.insert_dimension_columns(
                "patch", {"skymap": "b", "tract": [0], "patch": [99], "region": ["x"]}
            )
        with pytest.raises(DimensionValueError, match="tract"):
            reg.insert_dimension_columns(
                "patch", {"skymap": "b", "tract": [7], "patch": [99], "region": [blobs[0]]}
            )
        assert len(reg.query_dimension_records("patch", "skymap = 'b'")) == 60
    finally:
        reg.close()
