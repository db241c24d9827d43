"""Point-source depth of a coadd from its noise and its PSF.

The ``n``-sigma point-source depth is the AB magnitude of a point source whose PSF flux
(:func:`._stamps.psf_fluxes`: a linear fit of the pixel-integrated Gaussian PSF) has
signal-to-noise ``n`` on the coadd's typical pixel noise. For a PSF model ``m`` (unit
flux) on pixels of variance ``v`` the fit's error is ``sqrt(v / sum(m**2))``; for a
Gaussian of sigma ``s`` pixels ``1 / sum(m**2)`` is close to ``4 pi s**2`` (the PSF's
effective area), a little more for the pixel integration.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from rc2_platform.tasks.algorithms._psf import pixel_integrated_gaussian
from rc2_platform.tasks.algorithms.mask_bits import BAD, NO_DATA
from rc2_platform.tasks.algorithms.photometry_units import AB_NJY_ZERO_POINT

__all__ = ["psf_effective_area", "point_source_depth"]


def psf_effective_area(psf_sigma: float) -> float:
    """``1 / sum(m**2)`` (pixels) of the pixel-integrated Gaussian PSF ``m`` of sigma
    ``psf_sigma``, averaged over the source's sub-pixel position."""
    half = int(math.ceil(6.0 * psf_sigma)) + 1
    grid = np.arange(-half, half + 1, dtype=float)
    offsets = (np.arange(4) + 0.5) / 4 - 0.5
    areas = [
        1.0
        / float(
            np.sum(pixel_integrated_gaussian(grid[None, :], grid[:, None], dx, dy, psf_sigma) ** 2)
        )
        for dx in offsets
        for dy in offsets
    ]
    return float(np.mean(areas))


def point_source_depth(
    variance: NDArray[np.floating],
    mask: NDArray[np.integer] | None,
    psf_sigma: float,
    *,
    n_sigma: float = 5.0,
    zero_point: float = AB_NJY_ZERO_POINT,
) -> float:
    """The ``n_sigma`` point-source depth (AB mag) of an image in nJy per pixel.

    Parameters
    ----------
    variance : numpy.ndarray
        Variance plane (nJy^2 per pixel).
    mask : numpy.ndarray, optional
        Pixels with ``NO_DATA`` or ``BAD`` are left out.
    psf_sigma : float
        Gaussian PSF sigma, pixels.
    n_sigma : float
        Signal-to-noise of the depth (5: the usual "5-sigma depth").
    zero_point : float
        AB magnitude of 1 unit of flux (31.4 for nJy).

    Returns
    -------
    float
        ``zero_point - 2.5 log10(n_sigma * sqrt(median(v) * A))`` with ``A`` the
        PSF's effective area (:func:`psf_effective_area`) and ``v`` the median
        variance of the pixels with data; NaN if no pixel has data.
    """
    var = np.asarray(variance, dtype=float)
    good = np.isfinite(var) & (var > 0)
    if mask is not None:
        good &= (np.asarray(mask) & (NO_DATA | BAD)) == 0
    if not good.any() or not (psf_sigma > 0):
        return float("nan")
    noise = math.sqrt(float(np.median(var[good])) * psf_effective_area(psf_sigma))
    return float(zero_point - 2.5 * math.log10(n_sigma * noise))
