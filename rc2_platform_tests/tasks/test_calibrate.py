"""Tests of matching, the astrometric fit and the photometric zero point."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS

from rc2_platform.tasks.algorithms import (
    TaskDataError,
    calibrate_sources,
    centroid_error,
    fit_zero_point,
    match_sources,
)
from rc2_platform.tasks.algorithms.photometry_units import mag_to_njy
from rc2_platform_tests.tasks.synthetic import random_positions, tan_wcs

SHAPE = (2000, 1000)
TRUE_ZP = 30.5


def _sources_and_refcat(n: int = 60, seed: int = 5) -> tuple[Table, Table, WCS]:
    rng = np.random.default_rng(seed)
    true_wcs = tan_wcs(150.0, 2.0, 0.17, (500.5, 1000.5), rotation_deg=0.3)
    xs, ys = random_positions(n, SHAPE, margin=20, seed=seed)
    ra, dec = true_wcs.pixel_to_world_values(xs, ys)
    mags = rng.uniform(17.0, 21.0, n)
    counts = 10 ** (-0.4 * (mags - TRUE_ZP))
    sources = Table()
    sources["x"] = xs + rng.normal(0, 0.02, n)
    sources["y"] = ys + rng.normal(0, 0.02, n)
    sources["psf_flux"] = counts * (1 + rng.normal(0, 0.005, n))
    sources["psf_flux_err"] = 0.005 * counts
    sources["snr"] = np.full(n, 200.0)
    for flag in ("flag_edge", "flag_bad", "flag_saturated", "flag_centroid"):
        sources[flag] = np.zeros(n, bool)
    refcat = Table({"ra": ra, "dec": dec, "r_mag": mags})
    extra = Table({"ra": ra[:10] + 0.01, "dec": dec[:10] - 0.01, "r_mag": np.full(10, 22.0)})
    from astropy.table import vstack

    return sources, vstack([refcat, extra]), true_wcs


def test_shifted_wcs_is_corrected_and_zero_point_recovered() -> None:
    sources, refcat, true_wcs = _sources_and_refcat()
    initial = tan_wcs(
        150.0 + 3.0 / 3600, 2.0 - 2.0 / 3600, 0.1705, (500.5, 1000.5), rotation_deg=0.25
    )
    x, y = np.asarray(sources["x"]), np.asarray(sources["y"])
    ra0, dec0 = initial.pixel_to_world_values(x, y)
    rat, dect = true_wcs.pixel_to_world_values(x, y)
    assert np.max(np.hypot((ra0 - rat) * np.cos(np.radians(2.0)), dec0 - dect)) * 3600 > 3.0
    result = calibrate_sources(sources, initial, refcat, mag_column="r_mag", tolerance_arcsec=1.0)
    assert result.n_matches == len(sources)
    ra1, dec1 = result.wcs.pixel_to_world_values(x, y)
    err = np.hypot((ra1 - rat) * np.cos(np.radians(2.0)), dec1 - dect) * 3600
    assert np.max(err) < 0.02
    assert result.astrometry_rms < 0.01
    assert result.photo_calib.zero_point == pytest.approx(TRUE_ZP, abs=0.02)
    mags = np.asarray(result.sources["psf_mag"])
    ref = np.asarray(refcat["r_mag"])[np.asarray(result.sources["ref_index"])]
    assert np.median(np.abs(mags - ref)) < 0.01
    assert np.asarray(result.sources["psf_flux_njy"])[0] == pytest.approx(
        mag_to_njy(mags[0]), rel=1e-9
    )


def test_too_few_matches_is_a_clear_error() -> None:
    sources, refcat, true_wcs = _sources_and_refcat()
    with pytest.raises(TaskDataError, match="Unable to match sources: 2 matches, need at least 5"):
        calibrate_sources(
            sources, true_wcs, refcat[:2], mag_column="r_mag", search_radius_arcsec=0.0
        )
    far = tan_wcs(151.0, 2.0, 0.17, (500.5, 1000.5))
    with pytest.raises(TaskDataError, match="Unable to match sources: 0 matches"):
        calibrate_sources(sources, far, refcat, mag_column="r_mag")


def test_match_is_one_to_one_and_finds_the_offset() -> None:
    ra = np.array([10.0, 10.001, 10.002, 10.003])
    dec = np.array([0.0, 0.001, 0.0005, 0.002])
    shift = 4.0 / 3600.0
    result = match_sources(ra + shift, dec, ra, dec, tolerance_arcsec=0.5, search_radius_arcsec=8.0)
    assert sorted(result.src_index.tolist()) == [0, 1, 2, 3]
    assert np.array_equal(result.src_index, result.ref_index)
    assert result.offset[0] == pytest.approx(-4.0, abs=0.01)
    doubled = match_sources(
        np.array([10.0, 10.0]),
        np.array([0.0, 0.1 / 3600]),
        ra[:1],
        dec[:1],
        search_radius_arcsec=0.0,
    )
    assert len(doubled) == 1


def test_zero_point_clips_outliers() -> None:
    rng = np.random.default_rng(2)
    mags = rng.uniform(17, 21, 40)
    flux = 10 ** (-0.4 * (mags - 28.0)) * (1 + rng.normal(0, 0.01, 40))
    flux[:4] *= 3.0  # variable stars / blends
    calib = fit_zero_point(flux, mags)
    assert calib.zero_point == pytest.approx(28.0, abs=0.01)
    assert calib.n_stars == 36
    assert calib.scatter < 0.02
    with pytest.raises(TaskDataError, match="zero point"):
        fit_zero_point([1.0, -1.0], [20.0, 20.0])


def test_wcs_fit_weighted_by_centroid_errors_beats_the_faint_stars_noise() -> None:
    """A few bright stars with 0.01 px centroids and many faint ones with 0.5 px
    centroids (1" pixels): weighted by the centroid errors the fitted WCS is as good as
    the bright stars; unweighted it follows the faint ones' noise."""
    rng = np.random.default_rng(11)
    true_wcs = tan_wcs(150.0, 2.0, 1.0, (64.5, 130.5), rotation_deg=0.3)
    n_bright, n_faint = 12, 60
    n = n_bright + n_faint
    xs, ys = random_positions(n, (261, 128), margin=5, seed=11)
    ra, dec = true_wcs.pixel_to_world_values(xs, ys)
    snr = np.concatenate([np.full(n_bright, 300.0), np.full(n_faint, 12.0)])
    fwhm = 2.5
    noise = np.sqrt(2.0) * fwhm / 2.3548 / snr  # the centroid error of a Gaussian PSF
    sources = Table()
    sources["x"] = xs + rng.normal(0.0, 1.0, n) * noise
    sources["y"] = ys + rng.normal(0.0, 1.0, n) * noise
    sources["psf_flux"] = np.full(n, 1e5)
    sources["psf_flux_err"] = 1e5 / snr
    sources["snr"] = snr
    for flag in ("flag_edge", "flag_bad", "flag_saturated", "flag_centroid"):
        sources[flag] = np.zeros(n, bool)
    refcat = Table({"ra": ra, "dec": dec, "r_mag": np.full(n, 20.0)})
    gx, gy = np.meshgrid(np.linspace(0, 127, 9), np.linspace(0, 260, 9))
    rat, dect = true_wcs.pixel_to_world_values(gx.ravel(), gy.ravel())

    def wcs_error(psf_fwhm: float) -> float:
        result = calibrate_sources(sources, true_wcs, refcat, mag_column="r_mag", psf_fwhm=psf_fwhm)
        ra1, dec1 = result.wcs.pixel_to_world_values(gx.ravel(), gy.ravel())
        err = np.hypot((ra1 - rat) * np.cos(np.radians(2.0)), dec1 - dect) * 3600
        return float(np.sqrt(np.mean(err**2)))

    weighted, unweighted = wcs_error(fwhm), wcs_error(float("nan"))
    assert weighted < 0.01  # arcsec; the bright stars' centroids are 0.008"
    assert unweighted > 2 * weighted
    sources.meta["PSF_FWHM"] = fwhm  # characterizeImage's meta turns the weights on
    result = calibrate_sources(sources, true_wcs, refcat, mag_column="r_mag")
    ra1, dec1 = result.wcs.pixel_to_world_values(gx.ravel(), gy.ravel())
    err = np.hypot((ra1 - rat) * np.cos(np.radians(2.0)), dec1 - dect) * 3600
    assert float(np.sqrt(np.mean(err**2))) == pytest.approx(weighted, rel=1e-6)
    assert centroid_error(np.array([100.0, 0.0]), 2.35482, floor=0.0) == pytest.approx(
        [np.sqrt(2.0) / 100.0, 1.0], rel=1e-5
    )
