"""Gaussian PSF helpers (private)."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy.special import erf

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def pixel_integrated_gaussian(
    xs: NDArray[np.float64], ys: NDArray[np.float64], x0: float, y0: float, sigma: float
) -> NDArray[np.float64]:
    """Unit-flux circular Gaussian integrated over unit pixels centred on (xs, ys)."""
    s = sigma * math.sqrt(2.0)
    fx = 0.5 * (erf((xs + 0.5 - x0) / s) - erf((xs - 0.5 - x0) / s))
    fy = 0.5 * (erf((ys + 0.5 - y0) / s) - erf((ys - 0.5 - y0) / s))
    return np.asarray(fx * fy)


def gaussian_kernel(sigma: float, radius: int | None = None) -> NDArray[np.float64]:
    """Normalised, pixel-integrated Gaussian kernel of odd size ``2 * radius + 1``."""
    if radius is None:
        radius = max(1, int(math.ceil(3.5 * sigma)))
    grid = np.arange(-radius, radius + 1, dtype=float)
    kernel = pixel_integrated_gaussian(grid[None, :], grid[:, None], 0.0, 0.0, sigma)
    return np.asarray(kernel / kernel.sum())
