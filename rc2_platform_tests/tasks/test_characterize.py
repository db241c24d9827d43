"""Tests of detection, measurement and single-frame characterization."""

from __future__ import annotations

import numpy as np
import pytest

from rc2_platform.tasks.algorithms import (
    TaskDataError,
    characterize_image,
    detect_sources,
    estimate_background,
    measure_sources,
)
from rc2_platform.tasks.algorithms.mask_bits import CR, DETECTED, SAT
from rc2_platform_tests.tasks.synthetic import (
    add_noise,
    match_truth,
    random_positions,
    render_stars,
)

SHAPE = (192, 192)
SIGMA = 1.8  # FWHM 4.24 px
SKY_VAR = 100.0


def _star_field(seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    xs, ys = random_positions(25, SHAPE, margin=15, seed=seed, min_sep=15)
    fluxes = np.random.default_rng(seed).uniform(5e3, 5e4, len(xs))
    signal = render_stars(SHAPE, xs, ys, fluxes, SIGMA)
    image, variance = add_noise(signal, SKY_VAR, seed)
    return image, variance, xs, ys, fluxes


def test_measurement_recovers_positions_fluxes_and_shapes() -> None:
    image, variance, xs, ys, fluxes = _star_field()
    det = detect_sources(image, variance, psf_sigma=SIGMA, threshold=5.0)
    assert len(det.peaks) == len(xs)  # touching footprints merge; every star keeps its peak
    table = measure_sources(
        image, variance, det.peaks["x"], det.peaks["y"], psf_sigma=SIGMA, aperture_radii=(6.0,)
    )
    idx, dist = match_truth(np.asarray(table["x"]), np.asarray(table["y"]), xs, ys)
    assert np.all(dist < 0.1)
    psf_ratio = np.asarray(table["psf_flux"])[idx] / fluxes
    enclosed = 1 - np.exp(-(6.0**2) / (2 * SIGMA**2))  # Gaussian flux inside r = 6 px
    ap_ratio = np.asarray(table["ap_flux_6_0"])[idx] / (enclosed * fluxes)
    assert np.median(np.abs(psf_ratio - 1)) < 0.01
    assert np.all(np.abs(psf_ratio - 1) < 0.03)
    assert np.median(np.abs(ap_ratio - 1)) < 0.02
    assert np.all(np.abs(ap_ratio - 1) < 0.08)
    sigma_meas = np.sqrt(0.5 * (np.asarray(table["ixx"]) + np.asarray(table["iyy"])) - 1 / 12)
    assert np.median(sigma_meas) == pytest.approx(SIGMA, rel=0.03)
    assert str(table["psf_flux"].unit) == "ct"


def test_detection_sets_detected_mask_and_ignores_noise() -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(size=(128, 128)) * 10.0
    mask = np.zeros(image.shape, np.int32)
    det = detect_sources(
        image, np.full(image.shape, 100.0), psf_sigma=SIGMA, threshold=5.0, mask=mask
    )
    assert det.n_footprints == 0
    image[64, 64] += 0.0
    image += render_stars(image.shape, [64.0], [64.0], [1e4], SIGMA)
    det = detect_sources(
        image, np.full(image.shape, 100.0), psf_sigma=SIGMA, threshold=5.0, mask=mask
    )
    assert det.n_footprints == 1
    assert mask[64, 64] & DETECTED


def test_background_follows_a_gradient_under_stars() -> None:
    image, variance, *_ = _star_field()
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    gradient = 500.0 + 0.5 * xx + 0.2 * yy
    bkg = estimate_background(image + gradient, mesh_size=48)
    assert np.median(np.abs(bkg - gradient)) < 3.0


def test_characterize_psf_cosmic_rays_and_catalog() -> None:
    image, variance, xs, ys, fluxes = _star_field(seed=11)
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    sky = 800.0 + 0.3 * xx
    far = [
        (y, x)
        for y in range(10, SHAPE[0] - 10, 7)
        for x in range(10, SHAPE[1] - 10, 7)
        if np.min(np.hypot(xs - x, ys - y)) > 12
    ]
    cr_pixels = far[:3]
    for y, x in cr_pixels:
        image[y, x] += 3000.0
    ty, tx = far[-1]
    image[ty, tx - 1 : tx + 3] += 2500.0  # a short horizontal track
    result = characterize_image(image + sky, variance, psf_fwhm_guess=3.0, mesh_size=48)
    assert result.psf_fwhm == pytest.approx(2.3548 * SIGMA, rel=0.10)
    for y, x in [*cr_pixels, (ty, tx)]:
        assert result.mask[y, x] & CR, (y, x)
    assert result.n_cosmic_rays < 25  # stars were not eaten
    src = result.sources
    idx, dist = match_truth(np.asarray(src["x"]), np.asarray(src["y"]), xs, ys)
    assert np.all(dist < 0.1)
    assert np.all(np.abs(np.asarray(src["psf_flux"])[idx] / fluxes - 1) < 0.03)
    assert src["psf_candidate"].sum() >= 10
    assert np.median(np.abs(result.background - sky)) < 3.0


def test_characterize_errors_for_bad_frames() -> None:
    with pytest.raises(TaskDataError, match="no finite pixel"):
        characterize_image(np.full((64, 64), np.nan), np.ones((64, 64)))
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(128, 128)) * 10.0
    with pytest.raises(TaskDataError, match="no stars"):
        characterize_image(noise + 100.0, np.full(noise.shape, 100.0))
    sat_mask = np.full((64, 64), SAT, np.int32)
    with pytest.raises(TaskDataError, match="saturated"):
        characterize_image(np.full((64, 64), 65535.0), np.ones((64, 64)), sat_mask)
