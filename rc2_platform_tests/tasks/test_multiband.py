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


def test_merge_task_joins_peaks_of_one_star_a_pixel_apart_in_two_bands() -> None:
    """Peaks closer than one PSF FWHM in different bands are one object (on 2.7" pixels
    1" is less than a pixel: one star became two children, each centroided towards its
    own peak pixel); a star 3 FWHM away stays separate."""
    from rc2_platform.tasks._helpers import encode_footprints
    from rc2_platform.tasks.merge_detections import MergeDetectionsConfig, MergeDetectionsTask

    sigma = 1.06  # FWHM 2.5 px, as rc2-pixels' coadds
    fwhm = sigma * 2.3548
    shape = (60, 60)
    catalogs = []
    for k, (band, dx) in enumerate((("i", 0.0), ("r", 1.0))):
        # in r the first star's peak is one pixel up and right, the second's one right
        xs, ys = np.array([20.0 + dx, 20.0 + dx + 3 * fwhm]), np.array([30.0 + dx, 30.0])
        img, var = add_noise(render_stars(shape, xs, ys, np.full(2, 3e4), sigma), 100.0, seed=k)
        det = detect_sources(img, var, psf_sigma=sigma, threshold=5.0)
        table = det.peaks
        assert len(table) == 2
        encode_footprints(table, det.labels, "footprint_id")
        table.meta.update({"BAND": band, "PSF_FWHM": fwhm})
        catalogs.append(table)
    merged = MergeDetectionsTask().run(catalogs=catalogs)["output_catalog"]
    assert len(merged) == 2
    assert list(merged["n_bands"]) == [2, 2]
    no_fwhm = MergeDetectionsConfig(min_new_peak_distance_fwhm=0.0)
    old = MergeDetectionsTask(config=no_fwhm).run(catalogs=catalogs)
    assert len(old["output_catalog"]) == 4  # 1" (here 1 px): every star twice


def test_deblended_child_is_centred_on_the_star_not_its_peak_pixel() -> None:
    """Two blended stars at sub-pixel positions: the symmetric templates are mirrored
    through the sub-pixel peak, so each child's centroid is the star's (within its
    noise), not pulled towards the integer peak pixel."""
    sigma = 1.06
    xs, ys = np.array([30.45, 35.45]), np.array([30.35, 30.6])  # 2 FWHM apart
    img = render_stars((60, 60), xs, ys, np.array([5e4, 3e4]), sigma)
    var = np.ones_like(img)
    det = detect_sources(img + 1e-3, var, psf_sigma=sigma, threshold=5.0)
    merged = merge_detections({"i": det}, match_radius=2.0)
    assert len(merged.peaks) == 2
    deb = deblend(img, merged)
    meas = measure_coadd(img, var, None, deb, psf_sigma=sigma, band="i")
    order = np.argsort(np.asarray(meas["x"]))
    err = np.hypot(np.asarray(meas["x"])[order] - xs, np.asarray(meas["y"])[order] - ys)
    assert np.all(err < 0.02), err  # mirrored through the peak pixels: 0.079 and 0.029 px


def test_monotonic_templates_keep_a_row_of_stars_apart() -> None:
    """Three stars in a row, 2.8 FWHM apart: the middle one's symmetric template mirrors
    each outer star onto the other and took 38 % of their flux (middle child 2.5x its
    flux, outer centroids 0.25 px off); monotonic templates stop at the saddles."""
    sigma = 1.06
    xs, ys = np.array([20.3, 27.6, 34.2]), np.array([30.4, 30.7, 30.2])
    flux = np.array([4e4, 2e4, 4e4])
    img = render_stars((60, 60), xs, ys, flux, sigma)
    var = np.ones_like(img)
    det = detect_sources(img + 1e-3, var, psf_sigma=sigma, threshold=5.0)
    merged = merge_detections({"i": det}, match_radius=2.0)
    assert len(merged.peaks) == 3
    deb = deblend(img, merged)
    meas = measure_coadd(img, var, None, deb, psf_sigma=sigma, band="i")
    order = np.argsort(np.asarray(meas["x"]))
    ratio = np.asarray(deb.catalog["deblend_flux"])[order] / flux
    assert ratio == pytest.approx([1.0, 1.0, 1.0], abs=0.12)
    err = np.hypot(np.asarray(meas["x"])[order] - xs, np.asarray(meas["y"])[order] - ys)
    assert np.all(err < 0.02), err
