"""Tests of coadd detection, merging, deblending, measurement and forced photometry."""

from __future__ import annotations

import numpy as np
import pytest

from rc2_platform.tasks.algorithms import (
    deblend,
    detect_sources,
    forced_photometry,
    measure_coadd,
    merge_detections,
    merge_measurements,
)
from rc2_platform_tests.tasks.synthetic import add_noise, render_stars, tan_wcs

SHAPE = (96, 96)
SIGMA = 1.5
# two blended stars 7 px apart (2 FWHM), one isolated star, one star bright only in r
XS = np.array([40.0, 47.0, 70.2, 20.6])
YS = np.array([50.0, 50.5, 20.4, 75.3])
FLUX = {
    "r": np.array([40000.0, 20000.0, 15000.0, 8000.0]),
    "i": np.array([50000.0, 30000.0, 20000.0, 60.0]),
}


def _coadds() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for k, band in enumerate(("r", "i")):
        signal = render_stars(SHAPE, XS, YS, FLUX[band], SIGMA)
        out[band] = add_noise(signal, 400.0, seed=20 + k)
    return out


def test_merge_deblend_measure_and_forced_photometry() -> None:
    wcs = tan_wcs(45.0, 10.0, 0.2, (48.5, 48.5))
    coadds = _coadds()
    dets = {
        b: detect_sources(img, var, psf_sigma=SIGMA, threshold=5.0, wcs=wcs)
        for b, (img, var) in coadds.items()
    }
    merged = merge_detections(dets, match_radius=2.0, wcs=wcs)
    assert len(merged.peaks) == 4  # peaks seen in both bands are de-duplicated
    peaks = merged.peaks
    blend = [
        int(np.argmin(np.hypot(peaks["x"] - x, peaks["y"] - y)))
        for x, y in zip(XS, YS, strict=True)
    ]
    assert peaks["parent_id"][blend[0]] == peaks["parent_id"][blend[1]]  # one blended footprint
    assert bool(peaks["detected_r"][blend[3]]) and not bool(peaks["detected_i"][blend[3]])

    meas = {}
    for band, (img, var) in coadds.items():
        deb = deblend(img, merged)
        children = deb.catalog[blend]
        assert list(children["n_peaks"][:2]) == [2, 2]
        assert children["deblend_flux"][0] == pytest.approx(FLUX[band][0], rel=0.06)
        assert children["deblend_flux"][1] == pytest.approx(FLUX[band][1], rel=0.06)
        meas[band] = measure_coadd(img, var, None, deb, psf_sigma=SIGMA, band=band, wcs=wcs)
        rows = meas[band][blend]
        assert np.all(np.hypot(rows["x"][:3] - XS[:3], rows["y"][:3] - YS[:3]) < 0.1)
        assert np.asarray(rows["psf_flux"][:3]) == pytest.approx(FLUX[band][:3], rel=0.03)
        assert str(meas[band]["psf_flux"].unit) == "nJy"

    ref = merge_measurements(meas, min_snr=10.0)
    assert list(ref["ref_band"][blend]) == ["i", "i", "i", "r"]
    assert np.array_equal(ref["id"], meas["r"]["id"])

    for band, (img, var) in coadds.items():
        forced = forced_photometry(
            img, var, None, ref, wcs=wcs, psf_sigma=SIGMA, band=band, deblended=deblend(img, merged)
        )
        rows = forced[blend]
        assert np.asarray(rows["psf_flux"][:3]) == pytest.approx(FLUX[band][:3], rel=0.03)
        mag = np.asarray(rows["psf_mag"][2])
        assert mag == pytest.approx(31.4 - 2.5 * np.log10(FLUX[band][2]), abs=0.03)
        plain = forced_photometry(img, var, None, ref, wcs=wcs, psf_sigma=SIGMA, band=band)
        assert plain["psf_flux"][blend[2]] == pytest.approx(
            FLUX[band][2], rel=0.03
        )  # isolated star
    assert forced["psf_flux"][blend[3]] == pytest.approx(
        60.0, abs=5 * float(forced["psf_flux_err"][blend[3]])
    )
