"""The pixel preset ``rc2-pixels``: tract 9615 of ``rc2`` with real (16x binned) pixels."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from rc2_platform.datastore.formatters import FitsExposureFormatter
from rc2_platform.instrument import translate_header
from rc2_platform.simulate import _geometry as geo
from rc2_platform.simulate import load_preset, simulate
from rc2_platform.simulate.plan import make_visit_plan


def _digests(root: Path, pattern: str) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.glob(pattern))
    }


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory):
    """The same small slice (1 visit per band, 2 detectors) written by 1 and 2 processes."""
    base = tmp_path_factory.mktemp("rc2px")
    kwargs = {"seed": 5, "scale": 0.1, "max_detectors": 2}
    return (
        simulate("rc2-pixels", base / "one", workers=1, **kwargs),
        simulate("rc2-pixels", base / "two", workers=2, **kwargs),
    )


def test_same_visits_and_patches_as_the_rc2_preset_for_tract_9615() -> None:
    pixels, headers = load_preset("rc2-pixels"), load_preset("rc2")
    sky, coarse = geo.skymap("hsc_rings_v1"), geo.skymap(pixels.skymap)
    tract = sky.tract(9615)
    aim = {9615: (tract.ra, tract.dec)}
    a = make_visit_plan(pixels, 1, aim, [9615])
    b = make_visit_plan(headers, 1, aim, [9615])
    assert len(a) == 50
    for pa, pb in zip(a, b, strict=True):
        assert (pa.visit, pa.band, pa.ra, pa.dec, pa.rot, pa.mjd) == (
            pb.visit,
            pb.band,
            pb.ra,
            pb.dec,
            pb.rot,
            pb.mjd,
        )
    assert pixels.calib_epochs == headers.calib_epochs
    assert pixels.detectors == headers.detectors == "science"
    fine, binned = tract.patches, coarse.tract(9615).patches
    assert len(fine) == len(binned) == 81
    for p, q in zip(fine, binned, strict=True):
        corners_p = np.array(p.inner_region.getVertices())
        corners_q = np.array(q.inner_region.getVertices())
        assert np.allclose(corners_p, corners_q, atol=1e-12)


def test_any_number_of_workers_writes_the_same_files(slices) -> None:
    one, two = slices
    assert one.raws == two.raws == 5 * 2
    assert one.calibrations == two.calibrations == 2 * 28
    for pattern in ("raw/**/*.fits", "calib/**/*.fits"):
        assert _digests(one.root, pattern) == _digests(two.root, pattern)
    text = lambda r: Path(r.bootstrap).read_text()  # noqa: E731
    assert text(one) == text(two)


def test_raws_are_binned_pixel_files_the_platform_reads(slices) -> None:
    one, _ = slices
    raws = sorted((one.root / "raw").rglob("*.fits"))
    with fits.open(raws[0]) as hdus:
        hdus.verify("exception")
        header, data = hdus[0].header, hdus[0].data
    assert data.dtype == np.uint16 and data.shape == (261, 128 + 16)
    assert header["BIN-FCT1"] == 16 and header["DATASEC"] == "[1:128,1:261]"
    assert translate_header(header, str(raws[0])).binning == 16
    exposure = FitsExposureFormatter().read(raws[0])
    assert np.array_equal(exposure.image, data)
    # The fast header carries the cards the instrument's header writer gives that detector.
    visit = next(v for v in one.visits if f"{v.visit:07d}" in raws[0].name)
    expected = geo.raw_header(visit, one.detectors[0], 16)
    for key in ("CRPIX1", "CRPIX2", "CD1_1", "CD2_2", "MJD", "EXPTIME"):
        assert header[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-15), key
    assert header["DETECTOR"] == expected["DETECTOR"]
    sky = float(np.median(data[:, :128])) - float(np.median(data[:, 128:]))
    assert (
        0.8 * visit.sky_adu_per_s * visit.exptime < sky < 1.2 * visit.sky_adu_per_s * visit.exptime
    )


def test_calibrations_are_float_images(slices) -> None:
    one, _ = slices
    flat = next((one.root / "calib" / "flat").rglob("*.fits"))
    with fits.open(flat) as hdus:
        hdus.verify("exception")
        assert hdus[0].data.dtype.kind == "f" and hdus[0].data.shape == (261, 128)
        assert hdus[0].header["OBSTYPE"] == "flat" and 0.8 < np.median(hdus[0].data) < 1.2
