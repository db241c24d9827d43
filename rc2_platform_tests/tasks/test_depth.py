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
