"""The coadd's point-source depth agrees with the PSF-flux errors of the measurement."""

from __future__ import annotations

import numpy as np
import pytest

from rc2_platform.tasks.algorithms import mag_to_njy, measure_sources, point_source_depth
from rc2_platform.tasks.algorithms.mask_bits import NO_DATA
from rc2_platform_tests.tasks.synthetic import render_stars


def test_a_star_at_the_5_sigma_depth_is_measured_at_s_n_5() -> None:
    sigma = 1.06
    variance = np.full((64, 64), 400.0)
    mask = np.zeros((64, 64), np.int32)
    mask[:, :20] = NO_DATA  # left out: a huge variance there does not change the depth
    variance[:, :20] = 1e9
    depth = point_source_depth(variance, mask, sigma)
    xs, ys = np.array([40.3, 50.6]), np.array([30.2, 45.5])
    flux = np.full(2, mag_to_njy(depth))
    image = render_stars((64, 64), xs, ys, flux, sigma)
    table = measure_sources(image, np.full((64, 64), 400.0), xs, ys, psf_sigma=sigma)
    assert np.asarray(table["snr"]) == pytest.approx([5.0, 5.0], rel=0.02)
    deeper = point_source_depth(variance / 4.0, mask, sigma)
    assert deeper - depth == pytest.approx(2.5 * np.log10(2.0), abs=1e-9)
    assert np.isnan(point_source_depth(variance, np.full((64, 64), NO_DATA), sigma))


def test_depth_at_a_position_follows_the_local_noise_and_skips_no_data() -> None:
    from rc2_platform.validate.local_depth import depth_at

    sigma = 1.06
    variance = np.full((40, 40), 400.0)
    variance[:, 20:] = 1600.0  # half the coverage: 2x the noise, 0.75 mag shallower
    mask = np.zeros((40, 40), np.int32)
    mask[:5, :] = NO_DATA
    depths = depth_at(
        variance,
        mask,
        sigma * 2.3548,
        np.array([10.0, 30.0, 10.0, 99.0]),
        np.array([20.0, 20.0, 2.0, 20.0]),
    )
    assert depths[0] == pytest.approx(point_source_depth(variance[:, :20], None, sigma), abs=1e-3)
    assert depths[0] - depths[1] == pytest.approx(2.5 * np.log10(2.0), abs=1e-3)
    assert np.isneginf(depths[2]) and np.isneginf(depths[3])  # no data / off the image
