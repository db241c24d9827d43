"""Tests of makeWarp resampling and the clipped coadd."""

from __future__ import annotations

import numpy as np
import pytest

from rc2_platform.tasks.algorithms import (
    CircleRegion,
    PolygonRegion,
    WarpInput,
    assemble_coadd,
    bright_object_mask,
    coadd_psf_fwhm,
    measure_sources,
    warp_images,
)
from rc2_platform.tasks.algorithms.mask_bits import BRIGHT_OBJECT, CLIPPED, NO_DATA
from rc2_platform_tests.tasks.synthetic import add_noise, render_stars, tan_wcs

RA, DEC = 30.0, -5.0


def test_warp_conserves_flux_and_maps_positions() -> None:
    in_wcs = tan_wcs(RA, DEC, 0.17, (50.5, 50.5), rotation_deg=0.0)
    out_wcs = tan_wcs(RA, DEC, 0.2, (60.5, 60.5), rotation_deg=15.0)
    signal = render_stars((100, 100), [40.3], [55.7], [1e5], 2.5)
    inp = WarpInput(signal, np.full(signal.shape, 4.0), None, in_wcs, flux_scale=2.0)
    warp = warp_images([inp], out_wcs, (80, 90), origin=(10, 20))
    assert warp.n_inputs == 1
    ra, dec = in_wcs.pixel_to_world_values(40.3, 55.7)
    ox, oy = out_wcs.world_to_pixel_values(ra, dec)
    ox, oy = float(ox) - 10, float(oy) - 20
    sigma_out = 2.5 * 0.17 / 0.2
    table = measure_sources(
        warp.image, warp.variance, [ox], [oy], psf_sigma=sigma_out, aperture_radii=(12.0,)
    )
    assert table["x"][0] == pytest.approx(ox, abs=0.1)
    assert table["y"][0] == pytest.approx(oy, abs=0.1)
    assert table["ap_flux_12_0"][0] == pytest.approx(2e5, rel=0.01)
    assert (warp.mask & NO_DATA).any()  # corners outside the rotated input
    assert np.all(warp.image[(warp.mask & NO_DATA) != 0] == 0)
    covered = (warp.mask & NO_DATA) == 0
    assert np.median(warp.variance[covered]) == pytest.approx(
        4.0 * 4.0 * (0.2 / 0.17) ** 4, rel=0.4
    )


def test_warp_combines_the_detectors_of_a_visit() -> None:
    out_wcs = tan_wcs(RA, DEC, 0.2, (50.5, 50.5))
    left = tan_wcs(RA, DEC, 0.2, (50.5 + 0, 50.5))  # covers output x in [0, 50)
    right = tan_wcs(RA, DEC, 0.2, (50.5 - 50, 50.5))  # covers output x in [50, 100)
    images = [np.full((100, 50), 1.0), np.full((100, 50), 3.0)]
    inputs = [
        WarpInput(img, np.ones_like(img), None, w)
        for img, w in zip(images, [left, right], strict=True)
    ]
    warp = warp_images(inputs, out_wcs, (100, 100))
    assert warp.n_inputs == 2
    assert warp.coverage == 1.0
    assert warp.image[50, 10] == pytest.approx(1.0)
    assert warp.image[50, 90] == pytest.approx(3.0)
    outside = warp_images(inputs, tan_wcs(RA + 1, DEC, 0.2, (50.5, 50.5)), (100, 100))
    assert outside.n_inputs == 0 and outside.coverage == 0.0


def _warps(n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    shape = (64, 64)
    signal = render_stars(shape, [20.0, 45.0], [30.0, 40.0], [2e4, 5e3], 1.5)
    images, variances, masks = [], [], []
    for k in range(n):
        img, var = add_noise(signal, 25.0 * (1 + 0.2 * k), seed + k)
        images.append(img)
        variances.append(var)
        masks.append(np.zeros(shape, np.int32))
    return images, variances, masks


def test_clipped_stack_removes_a_transient_and_keeps_stars() -> None:
    images, variances, masks = _warps(5, seed=10)
    images[2] = images[2] + render_stars((64, 64), [50.0], [12.0], [3e4], 1.5)  # transient
    masks[4][:, :8] |= NO_DATA
    result = assemble_coadd(images, variances, masks)
    transient = result.image[10:15, 48:53].sum()
    noise = np.sqrt(result.variance[10:15, 48:53].sum())
    assert abs(transient) < 5 * noise
    assert result.mask[12, 50] & CLIPPED
    assert result.image[22:39, 12:29].sum() == pytest.approx(2e4, rel=0.02)
    assert not (result.mask[30, 20] & CLIPPED)
    assert result.n_inputs[30, 2] == 4 and result.n_inputs[30, 40] == 5
    assert result.weights[0] > result.weights[4]


def test_no_data_everywhere_gives_no_data_and_bright_object_masks() -> None:
    images, variances, masks = _warps(3, seed=1)
    for m in masks:
        m[:4, :] |= NO_DATA
    wcs = tan_wcs(RA, DEC, 0.2, (32.5, 32.5))
    ra_c, dec_c = wcs.pixel_to_world_values(10.0, 50.0)
    poly: list[tuple[float, float]] = []
    for x, y in [(40, 40), (60, 40), (60, 60), (40, 60)]:
        ra_v, dec_v = wcs.pixel_to_world_values(x, y)
        poly.append((float(ra_v), float(dec_v)))
    regions: list[CircleRegion | PolygonRegion] = [
        CircleRegion(float(ra_c), float(dec_c), 1.0),  # 1 arcsec = 5 px
        PolygonRegion(tuple(poly)),
    ]
    bright = bright_object_mask(regions, wcs, (64, 64))
    assert bright[50, 10] and bright[50, 14] and not bright[50, 16]
    assert bright[50, 50] and not bright[30, 50] and not bright[50, 61]
    result = assemble_coadd(images, variances, masks, bright_object_mask=bright)
    assert np.all(result.mask[:4] & NO_DATA) and np.all(result.n_inputs[:4] == 0)
    assert np.all(result.image[:4] == 0)
    assert result.mask[50, 10] & BRIGHT_OBJECT and not result.mask[20, 20] & BRIGHT_OBJECT


def test_coadd_psf_weights_each_warp_by_the_pixels_it_covers() -> None:
    images, variances, masks = _warps(2, seed=3)
    masks[1][:, 4:] |= NO_DATA  # warp 1 grazes the patch: 4 of 64 columns
    result = assemble_coadd(images, variances, masks)
    assert list(result.pixels_used) == [64 * 64, 64 * 4]
    fwhm = coadd_psf_fwhm([2.3, 2.8], list(result.weights * result.pixels_used))
    # the coadd is warp 0 on 60 of its 64 columns: its PSF, not the per-warp mean (2.56)
    assert 2.3 < fwhm < 2.35
    assert coadd_psf_fwhm([2.3, 2.8], list(result.weights)) > 2.5
