"""Flux units and the AB magnitude system (fluxes in nJy, ``mag = -2.5 log10(f / 3631 Jy)``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

AB_NJY_ZERO_POINT = 2.5 * math.log10(3631.0e9)
"""AB magnitude of a 1 nJy source (about 31.4)."""

COADD_ZERO_POINT = 27.0
"""Zero point (AB mag of one count) that warps and coadds are NOT scaled to: they are in nJy.

Kept for callers who want ZP=27 images: multiply nJy images by :func:`njy_to_counts_factor`.
"""


def njy_to_mag(flux_njy: ArrayLike) -> NDArray[np.float64]:
    """Return AB magnitudes of fluxes in nJy (NaN for non-positive fluxes)."""
    flux = np.asarray(flux_njy, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = AB_NJY_ZERO_POINT - 2.5 * np.log10(flux)
    return np.where(flux > 0, mag, np.nan)


def mag_to_njy(mag: ArrayLike) -> NDArray[np.float64]:
    """Return fluxes in nJy of AB magnitudes."""
    return np.asarray(10.0 ** (-0.4 * (np.asarray(mag, dtype=float) - AB_NJY_ZERO_POINT)))


def njy_to_counts_factor(zero_point: float) -> float:
    """Return the counts per nJy of an image whose zero point (mag of 1 count) is ``zero_point``."""
    return float(10.0 ** (0.4 * (zero_point - AB_NJY_ZERO_POINT)))


@dataclass(frozen=True)
class PhotoCalib:
    """A per-exposure photometric calibration: ``mag = zero_point - 2.5 log10(counts)``.

    Attributes
    ----------
    zero_point : float
        AB magnitude of a source giving one count (electron) in the image.
    zero_point_err : float
        Standard error of the zero point (clipped scatter / sqrt(n)).
    scatter : float
        Clipped standard deviation of the per-star offsets, mag.
    n_stars : int
        Number of reference stars used after clipping.
    """

    zero_point: float
    zero_point_err: float
    scatter: float
    n_stars: int

    @property
    def njy_per_count(self) -> float:
        """Flux in nJy of one count: multiply an image in counts by this to get nJy."""
        return 1.0 / njy_to_counts_factor(self.zero_point)

    def counts_to_njy(self, counts: ArrayLike) -> NDArray[np.float64]:
        """Convert instrumental fluxes (counts) to nJy."""
        return np.asarray(counts, dtype=float) * self.njy_per_count

    def counts_to_mag(self, counts: ArrayLike) -> NDArray[np.float64]:
        """Convert instrumental fluxes (counts) to AB magnitudes (NaN if non-positive)."""
        return njy_to_mag(self.counts_to_njy(counts))
