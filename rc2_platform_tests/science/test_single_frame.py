"""isr, characterizeImage and calibrate on the real files of the ``tiny`` survey."""

from __future__ import annotations

import math
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import Table

from rc2_platform.core.exposure import Exposure
from rc2_platform.datastore.formatters import FitsExposureFormatter, FitsTableFormatter
from rc2_platform.tasks.algorithms.mask_bits import BAD
from rc2_platform_tests.science.conftest import DETECTORS, VISITS
from rc2_platform_tests.science.tiny_files import TinyFiles


def _visit_row(tiny: TinyFiles, visit: int) -> Any:
    v = tiny.visits()
    return v[list(v["visit"]).index(visit)]


def test_post_isr_sky_is_the_simulated_sky_in_electrons(tiny: TinyFiles, frames: dict) -> None:
    visit, det = VISITS[0], DETECTORS[1]
    post = frames[(visit, det)]["postISRCCD"]
    row = _visit_row(tiny, visit)
    gain = float(post.header["ISR_GAIN"])
    expected = float(row["sky"]) * float(row["exptime"]) * gain
    good = post.mask == 0
    assert abs(float(np.median(post.image[good])) / expected - 1.0) < 0.02
    # Poisson: the variance plane is about the signal (plus read noise).
    assert abs(float(np.median(post.variance[good])) / expected - 1.0) < 0.1
    assert post.wcs is not None and post.header["BUNIT"] == "electron"


def test_isr_masks_the_dead_columns(tiny: TinyFiles, frames: dict) -> None:
    defects = Table.read(tiny.root / "truth.fits", hdu="DEFECTS")
    for det in DETECTORS[:2]:
        post = frames[(VISITS[0], det)]["postISRCCD"]
        for col in defects["column"][defects["detector"] == det]:
            assert np.all(post.mask[:, int(col)] & BAD)


def test_calibrate_zero_point_matches_the_simulator(tiny: TinyFiles, frames: dict) -> None:
    row = _visit_row(tiny, VISITS[0])
    zp_truth = tiny.zero_point("i")
    for det in DETECTORS:
        calexp = frames[(VISITS[0], det)]["calexp"]
        # mag of 1 electron = ZP(1 ADU/s) + 2.5 log10(exptime * gain)
        expected = zp_truth + 2.5 * math.log10(float(row["exptime"]) * calexp.header["ISR_GAIN"])
        assert abs(calexp.header["ZEROPNT"] - expected) < 0.03
        assert calexp.header["ASTRMS"] < 0.2


def test_calibrate_outputs_round_trip_through_the_formatters(frames: dict, tmp_path: Any) -> None:
    out = frames[(VISITS[0], DETECTORS[0])]
    src = out["src"]
    assert src["ra"].unit == u.deg and src["psf_flux_njy"].unit == u.nJy
    FitsTableFormatter().write(src, tmp_path / "src.fits")
    back = FitsTableFormatter().read(tmp_path / "src.fits")
    assert back["psf_mag"].unit == u.mag and len(back) == len(src)
    FitsExposureFormatter().write(out["calexp"], tmp_path / "calexp.fits")
    calexp = FitsExposureFormatter().read(tmp_path / "calexp.fits")
    assert isinstance(calexp, Exposure) and calexp.wcs is not None
    ra, dec = calexp.wcs.pixel_to_world_values(10.0, 20.0)
    ra0, dec0 = out["calexp"].wcs.pixel_to_world_values(10.0, 20.0)
    assert abs(ra - ra0) < 1e-9 and abs(dec - dec0) < 1e-9
    assert calexp.header["ZEROPNT"] == out["calexp"].header["ZEROPNT"]
