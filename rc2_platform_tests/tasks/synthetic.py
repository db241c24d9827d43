"""Synthetic images for the science-algorithm tests: Gaussian stars at known positions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from astropy.wcs import WCS
from numpy.typing import NDArray

from rc2_platform.tasks.algorithms._psf import pixel_integrated_gaussian


def render_stars(
    shape: tuple[int, int],
    xs: Sequence[float] | NDArray[np.float64],
    ys: Sequence[float] | NDArray[np.float64],
    fluxes: Sequence[float] | NDArray[np.float64],
    sigma: float,
) -> NDArray[np.float64]:
    """Noise-free image of pixel-integrated Gaussian stars (only a stamp per star is rendered)."""
    image = np.zeros(shape)
    half = int(np.ceil(6 * sigma)) + 1
    for x, y, f in zip(xs, ys, fluxes, strict=True):
        x0, x1 = max(int(x) - half, 0), min(int(x) + half + 1, shape[1])
        y0, y1 = max(int(y) - half, 0), min(int(y) + half + 1, shape[0])
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(float)
        image[y0:y1, x0:x1] += f * pixel_integrated_gaussian(xx, yy, x, y, sigma)
    return image


def add_noise(
    signal: NDArray[np.float64], sky_variance: float, seed: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return (noisy image, variance) with Gaussian noise of variance sky + signal."""
    rng = np.random.default_rng(seed)
    variance = sky_variance + np.clip(signal, 0, None)
    return signal + rng.normal(size=signal.shape) * np.sqrt(variance), variance


def tan_wcs(
    ra: float,
    dec: float,
    scale_arcsec: float,
    crpix: tuple[float, float],
    rotation_deg: float = 0.0,
) -> WCS:
    """A TAN WCS with north up / east left, optionally rotated."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = list(crpix)
    s = scale_arcsec / 3600.0
    t = np.radians(rotation_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    wcs.wcs.cd = np.array([[-s, 0.0], [0.0, s]]) @ rot
    wcs.wcs.set()
    return wcs


def random_positions(
    n: int, shape: tuple[int, int], margin: float, seed: int, min_sep: float = 0.0
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Uniform random positions at least ``margin`` from the edges and ``min_sep`` apart."""
    rng = np.random.default_rng(seed)
    xs: list[float] = []
    ys: list[float] = []
    while len(xs) < n:
        x = rng.uniform(margin, shape[1] - margin)
        y = rng.uniform(margin, shape[0] - margin)
        if all((x - a) ** 2 + (y - b) ** 2 >= min_sep**2 for a, b in zip(xs, ys, strict=True)):
            xs.append(x)
            ys.append(y)
    return np.array(xs), np.array(ys)


def match_truth(
    x: NDArray[np.float64], y: NDArray[np.float64], tx: NDArray[np.float64], ty: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """For each truth position, the index of the nearest measured position and the distance."""
    d2 = (x[None, :] - tx[:, None]) ** 2 + (y[None, :] - ty[:, None]) ** 2
    idx = np.argmin(d2, axis=1)
    return idx.astype(np.int64), np.sqrt(d2[np.arange(len(tx)), idx])
