"""The rings sky map: numbering, RC2 tract positions, patches, tiny twin, bulk records."""

from __future__ import annotations

from typing import Any

import lsst.sphgeom as sphgeom
import numpy as np
import pytest

from rc2_platform.errors import ConfigError, DimensionValueError
from rc2_platform.geometry import decode_region, polygon_from_radec
from rc2_platform.skymap import (
    RingsSkyMap,
    load_skymap,
    load_skymap_config,
    patch_records,
    tract_records,
)


@pytest.fixture(scope="module")
def skymap() -> RingsSkyMap:
    return load_skymap("hsc_rings_v1")


@pytest.fixture(scope="module")
def tiny() -> RingsSkyMap:
    return load_skymap("hsc_rings_v1_tiny")


def _point(ra: float, dec: float) -> sphgeom.UnitVector3d:
    return sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(float(ra), float(dec)))


def _vertices(poly: Any) -> np.ndarray:
    return np.array(sorted((v.x(), v.y(), v.z()) for v in poly.getVertices()))


def test_numbering_matches_hsc_rings_v1(skymap: RingsSkyMap) -> None:
    assert skymap.num_tracts == 18938
    assert skymap.num_patches == (9, 9)
    assert skymap.tract(0).dec == -90.0 and skymap.tract(18937).dec == 90.0
    ring, index = skymap.ring_indices(9813)
    assert skymap.tract(9813 - index).ra == 0.0  # first tract of its ring starts at ra_start
    assert skymap.ring_indices(1) == (0, 0)
    rec = skymap.skymap_record()
    assert rec["tract_max"] == 18938 and rec["patch_nx_max"] == 9 and len(bytes(rec["hash"])) == 20  # type: ignore[call-overload]


@pytest.mark.parametrize(
    "tract_id,centre,points",
    [
        (9813, (150.12, 2.21), [(150.12, 2.21)]),
        (9697, (337.6, 0.7), [(337.0, 0.7), (338.0, 0.7), (337.5, 0.2), (337.5, 1.2)]),
        (9615, (216.55, 0.35), [(216.3, 0.0), (216.8, 0.0), (216.3, 0.7), (216.8, 0.7)]),
    ],
)
def test_rc2_tracts_are_at_their_real_positions(
    skymap: RingsSkyMap,
    tract_id: int,
    centre: tuple[float, float],
    points: list[tuple[float, float]],
) -> None:
    # The field centre is owned by the tract; the whole field lies inside its region
    # (its edge may be nearer a neighbour's centre, inside the overlap).
    assert skymap.find_tract(*centre).id == tract_id
    tract = skymap.tract(tract_id)
    for ra, dec in points:
        assert tract.inner_region.contains(_point(ra, dec))
    ids = skymap.find_tract_ids(np.array([centre[0], 0.0]), np.array([centre[1], -89.9]))
    assert ids.tolist() == [tract_id, 0]


def test_find_tract_at_the_poles_and_wraparound(skymap: RingsSkyMap) -> None:
    assert skymap.find_tract(12.0, -89.9).id == 0
    assert skymap.find_tract(12.0, 89.9).id == 18937
    assert skymap.find_tract(359.99, 0.0).id == skymap.find_tract(0.0, 0.0).id


def test_patch_ids_boxes_and_wcs(skymap: RingsSkyMap) -> None:
    tract = skymap.tract(9813)
    patch = tract.patch((3, 5))
    assert patch.sequential_id == 5 * 9 + 3 and tract.patch(48).index == (3, 5)
    assert (patch.inner_bbox.width, patch.outer_bbox.width) == (4000, 4200)
    corner = tract.patch(0)
    assert corner.outer_bbox.x_min == 0 and corner.outer_bbox.x_max == 4100  # clipped
    assert tract.bbox.width == 36000
    # The patch WCS is the tract WCS with the origin moved to the outer box corner.
    ra, dec = patch.wcs.pixel_to_world_values(10.0, 20.0)
    ra_t, dec_t = tract.wcs.pixel_to_world_values(
        10.0 + patch.pixel_origin[0], 20.0 + patch.pixel_origin[1]
    )
    np.testing.assert_allclose([ra, dec], [ra_t, dec_t], atol=1e-12)
    # Pixel centre of the tract is the tract centre; east is left.
    cra, cdec = tract.wcs.pixel_to_world_values(17999.5, 17999.5)
    np.testing.assert_allclose([cra, cdec], [tract.ra, tract.dec], atol=1e-10)
    ra_left, _ = tract.wcs.pixel_to_world_values(0.0, 17999.5)
    assert ra_left > tract.ra
    with pytest.raises(DimensionValueError, match="patch 81 does not exist in tract 9813"):
        tract.patch(81)
    with pytest.raises(DimensionValueError, match="tract 18938 does not exist"):
        skymap.tract(18938)


@pytest.mark.parametrize("tract_id", [9615, 0, 18937, 100])
def test_patch_inner_regions_tile_the_tract(skymap: RingsSkyMap, tract_id: int) -> None:
    tract = skymap.tract(tract_id)
    rng = np.random.default_rng(tract_id)
    x, y = rng.uniform(-0.5, 35999.5, (2, 500))
    points = tract.pixel_to_vectors(x, y)
    regions = [p.inner_region for p in tract.patches]
    for v in points:
        u = sphgeom.UnitVector3d(*v)
        assert tract.inner_region.contains(u)
        assert sum(r.contains(u) for r in regions) == 1
    # Neighbours share their edge vertices exactly (no gaps, no slivers).
    a, b = tract.patch((2, 2)).inner_region, tract.patch((3, 2)).inner_region
    shared = {tuple(np.round(v, 12)) for v in _vertices(a)} & {
        tuple(np.round(v, 12)) for v in _vertices(b)
    }
    assert len(shared) == 2


def test_find_patches(skymap: RingsSkyMap) -> None:
    tract = skymap.tract(9813)
    centre = tract.patch(40)
    ra, dec = tract.wcs.pixel_to_world_values(19999.5, 19999.5)  # corner of 4 patches
    small = polygon_from_radec(
        ra + np.array([-1, 1, 1, -1]) * 0.01, dec + np.array([-1, -1, 1, 1]) * 0.01
    )
    found = {p.sequential_id for p in skymap.find_patches(9813, small)}
    assert found == {centre.sequential_id, 41, 49, 50}
    far = polygon_from_radec([10, 10.1, 10.1], [-40, -40, -39.9])
    assert skymap.find_patches(9813, far) == []


def test_tiny_has_the_same_geometry(skymap: RingsSkyMap, tiny: RingsSkyMap) -> None:
    assert tiny.num_tracts == skymap.num_tracts and tiny.num_patches == skymap.num_patches
    for tract_id in (9615, 9697, 9813, 0):
        full_t, tiny_t = skymap.tract(tract_id), tiny.tract(tract_id)
        assert (full_t.ra, full_t.dec) == (tiny_t.ra, tiny_t.dec)
        assert tiny_t.bbox.width == 4500
        for idx in (0, 40, 80):
            np.testing.assert_allclose(
                _vertices(full_t.patch(idx).inner_region),
                _vertices(tiny_t.patch(idx).inner_region),
                atol=1e-13,
            )
        # Tiny pixel i covers full pixels 8i..8i+7 (centre 8i + 3.5).
        a = tiny_t.wcs.pixel_to_world_values(100.0, 200.0)
        b = full_t.wcs.pixel_to_world_values(803.5, 1603.5)
        np.testing.assert_allclose(a, b, atol=1e-10)
    assert tiny.tract(9615).patch(0).outer_bbox.x_max == 512


def test_bulk_tract_records(skymap: RingsSkyMap) -> None:
    records = tract_records(skymap)
    assert len(records) == 18938 and len(records.regions) == 18938
    assert records.tract[9813] == 9813
    region = decode_region(records.regions[9813])
    np.testing.assert_allclose(
        _vertices(region), _vertices(skymap.tract(9813).inner_region), atol=1e-14
    )
    assert region.contains(_point(150.12, 2.21))
    rows = records.as_dicts()
    assert rows[9615]["id"] == 9615 and rows[9615]["skymap"] == "hsc_rings_v1"


def test_bulk_patch_records_match_patch_info(skymap: RingsSkyMap) -> None:
    tracts = [0, 9615, 9697, 9813, 18937]
    records = patch_records(skymap, tracts, chunk_tracts=2)  # exercise chunking
    assert len(records) == 5 * 81
    assert records.tract[81 * 3] == 9813 and records.patch[81 * 3 + 48] == 48
    assert (records.cell_x[81 * 3 + 48], records.cell_y[81 * 3 + 48]) == (3, 5)
    for t_index, tract_id in enumerate(tracts):
        tract = skymap.tract(tract_id)
        for patch_id in (0, 17, 80):
            i = t_index * 81 + patch_id
            np.testing.assert_allclose(
                _vertices(decode_region(records.regions[i])),
                _vertices(tract.patch(patch_id).inner_region),
                atol=1e-13,
            )
    with pytest.raises(DimensionValueError):
        patch_records(skymap, [20000])


def test_unknown_skymap_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no sky map named 'nope'.*hsc_rings_v1"):
        load_skymap_config("nope")
