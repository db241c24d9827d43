"""The HSC-like camera layout, records, detector WCS and footprints."""

from __future__ import annotations

import itertools
from typing import Any

import lsst.sphgeom as sphgeom
import numpy as np
import pytest

from rc2_platform.errors import IngestError
from rc2_platform.geometry import tan_project
from rc2_platform.instrument import detector_regions, detector_wcs, load_camera


def _point(ra: float, dec: float) -> sphgeom.UnitVector3d:
    return sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(float(ra), float(dec)))


def test_layout_has_104_science_and_8_focus_detectors_with_hsc_names() -> None:
    camera = load_camera()
    purposes = [d.purpose for d in camera.detectors.values()]
    assert len(camera.detectors) == 112
    assert purposes.count("SCIENCE") == 104 and purposes.count("FOCUS") == 8
    assert camera.detector(0).full_name == "1_53"
    assert camera.detector_by_name("0_00").id == 73
    assert all(camera.detector(i).purpose == "FOCUS" for i in range(104, 112))
    assert {d.yaw for d in camera.detectors.values()} >= {90.0, 270.0}


def test_science_detectors_do_not_overlap_and_fov_is_about_1_5_degrees() -> None:
    camera = load_camera()
    fp = detector_regions(0.0, 0.0, 0.0, camera=camera)
    # Footprints at the equator, rot 0: project back to the plane and check rectangles.
    xi, eta = tan_project(0.0, 0.0, *fp.corners_radec)
    boxes = [
        (xi[0, j].min(), xi[0, j].max(), eta[0, j].min(), eta[0, j].max())
        for j in range(len(fp.detector_ids))
    ]
    for a, b in itertools.combinations(range(len(boxes)), 2):
        ba, bb = boxes[a], boxes[b]
        overlap_x = min(ba[1], bb[1]) - max(ba[0], bb[0])
        overlap_y = min(ba[3], bb[3]) - max(ba[2], bb[2])
        assert overlap_x <= 1e-9 or overlap_y <= 1e-9, (fp.detector_ids[a], fp.detector_ids[b])
    science = [j for j, d in enumerate(fp.detector_ids) if camera.detector(d).purpose == "SCIENCE"]
    radius = np.hypot(xi[0, science], eta[0, science]).max()
    area = sum((boxes[j][1] - boxes[j][0]) * (boxes[j][3] - boxes[j][2]) for j in science)
    equivalent_diameter = 2 * np.sqrt(area / np.pi)
    assert 1.4 < equivalent_diameter < 1.7
    assert 0.75 < radius < 0.95


def test_records_and_filters() -> None:
    camera = load_camera()
    rec = camera.instrument_record()
    assert rec["name"] == "HSC" and rec["detector_max"] >= 112 and rec["visit_max"] > 10**7
    filters = {r["name"]: r["band"] for r in camera.filter_records()}
    assert filters["HSC-R2"] == "r" and filters["HSC-I2"] == "i" and filters["HSC-Y"] == "y"
    assert [b["name"] for b in camera.band_records()] == ["g", "r", "i", "z", "y"]
    det = camera.detector_records()[49]
    assert det == {"instrument": "HSC", "id": 49, "full_name": "0_12", "raft": "0",
                   "name_in_raft": "12", "purpose": "SCIENCE"}  # fmt: skip


def test_unknown_detector_and_filter_errors_name_the_value() -> None:
    camera = load_camera()
    with pytest.raises(IngestError, match="unknown detector 150 in a.fits"):
        camera.detector(150, "a.fits")
    with pytest.raises(IngestError, match="'HSC-X'"):
        camera.band_of("HSC-X")


@pytest.mark.parametrize("binning", [1, 2, 4])
@pytest.mark.parametrize("detector_id", [0, 49, 100, 103, 110])
def test_detector_wcs_agrees_with_vectorized_footprint(detector_id: int, binning: int) -> None:
    ra, dec, rot = 150.1, 2.2, 33.0
    camera = load_camera()
    wcs = detector_wcs(ra, dec, rot, detector_id, binning)
    nx, ny = camera.detector_nx // binning, camera.detector_ny // binning
    assert wcs.pixel_shape == (nx, ny)
    fp = detector_regions([ra], [dec], [rot], [detector_id])
    region = fp.polygon(0, 0)
    # The WCS-projected centre pixel is inside the footprint; corners match.
    cra, cdec = wcs.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2)
    assert region.contains(_point(cra, cdec))
    edges_x = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5])
    edges_y = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
    wra, wdec = wcs.pixel_to_world_values(edges_x, edges_y)
    fra, fdec = fp.corners_radec
    np.testing.assert_allclose(fdec[0, 0], wdec, atol=1e-9)
    np.testing.assert_allclose(fra[0, 0], wra, atol=1e-9)
    # A point well outside the detector is not in the region.
    ora, odec = wcs.pixel_to_world_values(nx * 1.5, ny * 1.5)
    assert not region.contains(_point(ora, odec))


def test_rotation_turns_the_focal_plane() -> None:
    fp0 = detector_regions(150.0, 2.0, 0.0, [49])
    fp90 = detector_regions(150.0, 2.0, 90.0, [49])
    x0, y0 = tan_project(150.0, 2.0, *fp0.corners_radec)
    x9, y9 = tan_project(150.0, 2.0, *fp90.corners_radec)
    # Rotating the position angle by 90 deg maps (xi, eta) -> (eta, -xi) about the boresight.
    np.testing.assert_allclose(np.sort(x9.ravel()), np.sort(y0.ravel()), atol=1e-9)
    np.testing.assert_allclose(np.sort(y9.ravel()), np.sort(-x0.ravel()), atol=1e-9)


def test_detector_regions_many_exposures_encode() -> None:
    ra = np.array([150.0, 216.5, 337.5])
    fp = detector_regions(ra, [2.0, 0.3, 0.7], [0.0, 45.0, 90.0])
    assert fp.vectors.shape == (3, 112, 4, 3)
    encoded = fp.encoded()
    assert len(encoded) == 3 * 112
    from rc2_platform.geometry import decode_region

    decoded: Any = decode_region(encoded[112 + 5])
    got = np.array(sorted((v.x(), v.y(), v.z()) for v in decoded.getVertices()))
    want = np.array(sorted((v.x(), v.y(), v.z()) for v in fp.polygon(1, 5).getVertices()))
    np.testing.assert_allclose(got, want, atol=1e-14)
