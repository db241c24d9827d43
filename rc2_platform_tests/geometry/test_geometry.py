"""Geometry helpers: polygons, encoding, HTM ranges, TAN projection vs astropy."""

from __future__ import annotations

from typing import Any

import lsst.sphgeom as sphgeom
import numpy as np
import pytest
from astropy.wcs import WCS

from rc2_platform.geometry import (
    decode_region,
    encode_quads,
    encode_region,
    htm7_ids,
    htm7_ranges,
    lonlat_to_vectors,
    polygon_from_radec,
    region_corners_radec,
    tan_deproject_radec,
    tan_project,
)


def _point(ra: float, dec: float) -> sphgeom.UnitVector3d:
    return sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(ra, dec))


def test_polygon_from_radec_contains_interior_not_exterior() -> None:
    poly = polygon_from_radec([10, 11, 11, 10], [0, 0, 1, 1])
    assert poly.contains(_point(10.5, 0.5))
    assert not poly.contains(_point(12.0, 0.5))
    ra, dec = region_corners_radec(poly)
    assert sorted(np.round(ra, 9)) == [10, 10, 11, 11]


def test_encode_decode_round_trip_and_none() -> None:
    poly = polygon_from_radec([150, 151, 151, 150], [2, 2, 3, 3])
    assert decode_region(encode_region(poly)) == poly
    assert encode_region(None) is None and decode_region(None) is None


def _same_polygon(a: Any, b: Any) -> bool:
    va = np.array([[v.x(), v.y(), v.z()] for v in a.getVertices()])
    vb = np.array([[v.x(), v.y(), v.z()] for v in b.getVertices()])
    return len(va) == len(vb) and any(
        np.allclose(np.roll(va, k, axis=0), vb, atol=1e-14) for k in range(len(va))
    )


@pytest.mark.parametrize("reverse", [False, True])
def test_encode_quads_matches_sphgeom(reverse: bool) -> None:
    ra = np.array([[10, 11, 11, 10], [200, 201, 201, 200]], dtype=float)
    dec = np.array([[0, 0, 1, 1], [-30, -30, -29, -29]], dtype=float)
    vec = lonlat_to_vectors(ra, dec)
    if reverse:
        vec = vec[:, ::-1]
    encoded = encode_quads(vec)
    for i, data in enumerate(encoded):
        expected = polygon_from_radec(ra[i], dec[i])
        decoded = decode_region(data)
        assert _same_polygon(decoded, expected)
        assert decoded.contains(_point(ra[i].mean(), dec[i].mean()))


def test_htm7_ranges_cover_the_region() -> None:
    poly = polygon_from_radec([150, 150.2, 150.2, 150], [2, 2, 2.2, 2.2])
    pix = sphgeom.HtmPixelization(7)
    inside = pix.index(_point(150.1, 2.1))
    ids = htm7_ids(poly)
    assert inside in ids
    assert all(b < e for b, e in htm7_ranges(poly))
    assert all(pix.universe().contains(i) for i in ids)
    assert pix.index(_point(10, -40)) not in ids


@pytest.mark.parametrize("ra0,dec0", [(150.0, 2.0), (10.0, -89.5), (0.0, 90.0), (0.0, -90.0)])
def test_tan_projection_agrees_with_astropy(ra0: float, dec0: float) -> None:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra0, dec0]
    wcs.wcs.crpix = [1, 1]
    wcs.wcs.cd = [[1, 0], [0, 1]]
    wcs.wcs.lonpole = 180
    xi = np.array([0.3, -0.5, 0.7])
    eta = np.array([0.2, 0.6, -0.4])
    ra_ref, dec_ref = wcs.all_pix2world(xi + 1, eta + 1, 1)
    ra, dec = tan_deproject_radec(ra0, dec0, xi, eta)
    np.testing.assert_allclose(dec, dec_ref, atol=1e-10)
    dra = (ra - ra_ref + 180) % 360 - 180
    np.testing.assert_allclose(dra * np.cos(np.radians(dec)), 0, atol=1e-10)
    xi2, eta2 = tan_project(ra0, dec0, ra, dec)
    np.testing.assert_allclose(xi2, xi, atol=1e-10)
    np.testing.assert_allclose(eta2, eta, atol=1e-10)
