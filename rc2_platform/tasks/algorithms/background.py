"""Background estimation: a sigma-clipped median on a coarse mesh, linearly interpolated.

Compared with the LSST science pipelines (``SubtractBackgroundTask``, which fits
Chebyshev polynomials or Akima splines to binned statistics and can be re-estimated
over a whole focal plane), this is a per-image mesh median with bilinear
interpolation between mesh centres and linear extrapolation to the edges.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from rc2_platform.tasks.algorithms.mask_bits import BAD, CR, DETECTED, NO_DATA, SAT

BACKGROUND_IGNORE_BITS = BAD | SAT | CR | DETECTED | NO_DATA
"""Mask bits whose pixels are left out of the background statistics."""


def _clipped_median(values: NDArray[np.float64], nsigma: float = 3.0, iterations: int = 3) -> float:
    """Median of ``values`` after iterative clipping at ``nsigma`` robust sigmas."""
    if values.size == 0:
        return float("nan")
    kept = values
    for _ in range(iterations):
        med = float(np.median(kept))
        sigma = 1.4826 * float(np.median(np.abs(kept - med)))
        if sigma <= 0:
            break
        new = kept[np.abs(kept - med) <= nsigma * sigma]
        if new.size == kept.size or new.size == 0:
            break
        kept = new
    return float(np.median(kept))


def estimate_background(
    image: NDArray[np.floating],
    mask: NDArray[np.integer] | None = None,
    *,
    mesh_size: int = 64,
    ignore_bits: int = BACKGROUND_IGNORE_BITS,
    min_fraction: float = 0.2,
) -> NDArray[np.float64]:
    """Estimate a smooth background image.

    The image is cut into ``mesh_size`` x ``mesh_size`` cells (the last row/column of
    cells takes the remainder); each cell's value is the 3-sigma clipped median of its
    finite, unmasked pixels. Cells with fewer than ``min_fraction`` usable pixels are
    filled from the nearest good cell. The cell grid is interpolated bilinearly to
    every pixel (linear extrapolation beyond the outermost cell centres), as two
    matrix products.

    Parameters
    ----------
    image : numpy.ndarray
        2-d image.
    mask : numpy.ndarray, optional
        Mask plane; pixels with any of ``ignore_bits`` are not used.
    mesh_size : int
        Cell size in pixels; choose several times the size of the largest source.
    ignore_bits : int
        Mask bits to exclude from the statistics.
    min_fraction : float
        Minimum fraction of usable pixels for a cell to count as measured.

    Returns
    -------
    numpy.ndarray
        Background image of the same shape (float64).

    Raises
    ------
    ValueError
        If no cell has enough usable pixels (e.g. an all-NaN image).
    """
    ny, nx = image.shape
    usable = np.isfinite(image)
    if mask is not None:
        usable &= (mask & ignore_bits) == 0
    ny_cells = max(1, ny // mesh_size)
    nx_cells = max(1, nx // mesh_size)
    y_edges = np.linspace(0, ny, ny_cells + 1).astype(int)
    x_edges = np.linspace(0, nx, nx_cells + 1).astype(int)
    grid = np.full((ny_cells, nx_cells), np.nan)
    for j in range(ny_cells):
        for i in range(nx_cells):
            sl = (slice(y_edges[j], y_edges[j + 1]), slice(x_edges[i], x_edges[i + 1]))
            good = usable[sl]
            if good.mean() >= min_fraction:
                grid[j, i] = _clipped_median(np.asarray(image[sl][good], dtype=float))
    bad = ~np.isfinite(grid)
    if bad.all():
        raise ValueError("no background cell has enough finite, unmasked pixels")
    if bad.any():
        nearest = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
        grid = grid[tuple(nearest)]
    y_centres = 0.5 * (y_edges[:-1] + y_edges[1:]) - 0.5
    x_centres = 0.5 * (x_edges[:-1] + x_edges[1:]) - 0.5
    if ny_cells == 1 and nx_cells == 1:
        return np.full(image.shape, grid[0, 0])
    if ny_cells == 1:
        grid, y_centres = np.vstack([grid, grid]), np.array([0.0, ny - 1.0])
    if nx_cells == 1:
        grid, x_centres = np.hstack([grid, grid]), np.array([0.0, nx - 1.0])
    # Bilinear interpolation (linear extrapolation beyond the outer centres) is separable:
    # interpolate the grid along x for every pixel column, then along y.
    wy = _linear_weights(y_centres, ny)
    wx = _linear_weights(x_centres, nx)
    return np.asarray(wy @ grid @ wx.T)


def _linear_weights(centres: NDArray[np.float64], n: int) -> NDArray[np.float64]:
    """(n, len(centres)) weights of piecewise-linear interpolation at pixels 0..n-1, with
    linear extrapolation from the first/last interval (what RegularGridInterpolator does
    with ``fill_value=None``)."""
    pixels = np.arange(n, dtype=float)
    k = np.clip(np.searchsorted(centres, pixels, side="right") - 1, 0, len(centres) - 2)
    t = (pixels - centres[k]) / (centres[k + 1] - centres[k])
    weights = np.zeros((n, len(centres)))
    weights[np.arange(n), k] = 1.0 - t
    weights[np.arange(n), k + 1] = t
    return weights


def robust_sigma(values: NDArray[np.floating]) -> float:
    """Return 1.4826 x the median absolute deviation of the finite values."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(finite - np.median(finite))))
