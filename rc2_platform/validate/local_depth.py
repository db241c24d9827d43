"""The coadd's 5-sigma point-source depth at each truth star's position.

A patch's ``DEPTH5`` (forcedPhotCoadd) is the depth of its typical pixel; near a tract's
edge the number of visits, hence the depth, changes within a patch and part of it may
have no data at all. :func:`local_depths` reads each patch's coadd and evaluates the
depth where each star is: the median variance of the 5 x 5 pixels around it (pixels
with data) and the coadd's PSF (:func:`~rc2_platform.tasks.algorithms.point_source_depth`
formula); ``-inf`` where the star has no data (it cannot be found, so it is not
counted).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import Table
from numpy.typing import NDArray

from rc2_platform.tasks.algorithms.depth import psf_effective_area
from rc2_platform.tasks.algorithms.mask_bits import BAD, NO_DATA
from rc2_platform.tasks.algorithms.photometry_units import AB_NJY_ZERO_POINT

#: Half-size of the box whose median variance is the local noise.
HALF_BOX = 2

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def depth_at(
    variance: NDArray[np.floating],
    mask: NDArray[np.integer] | None,
    psf_fwhm: float,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    n_sigma: float = 5.0,
) -> NDArray[np.float64]:
    """The ``n_sigma`` point-source depth (AB mag; nJy images) at pixel positions (x, y);
    ``-inf`` where the nearest pixel is outside the image or has no data."""
    var = np.asarray(variance, dtype=float)
    ny, nx = var.shape
    good = np.isfinite(var) & (var > 0)
    if mask is not None:
        good &= (np.asarray(mask) & (NO_DATA | BAD)) == 0
    area = psf_effective_area(psf_fwhm / FWHM_PER_SIGMA)
    ix, iy = np.rint(np.asarray(x, float)), np.rint(np.asarray(y, float))
    out = np.full(len(ix), -np.inf)
    inside = np.isfinite(ix) & np.isfinite(iy) & (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    steps = np.arange(-HALF_BOX, HALF_BOX + 1)
    for k in np.nonzero(inside)[0]:
        cx, cy = int(ix[k]), int(iy[k])
        if not good[cy, cx]:
            continue
        rows = np.clip(cy + steps, 0, ny - 1)[:, None]
        cols = np.clip(cx + steps, 0, nx - 1)[None, :]
        box = var[rows, cols][good[rows, cols]]
        out[k] = AB_NJY_ZERO_POINT - 2.5 * math.log10(
            n_sigma * math.sqrt(float(np.median(box)) * area)
        )
    return out


def local_depths(
    butler: Any, run: str, truth: Table, patches: Sequence[Any], bands: Sequence[str]
) -> dict[str, NDArray[np.float64]]:
    """Per band and truth row, the 5-sigma depth of its patch's ``deepCoadd`` (in ``run``)
    at its position; NaN outside the patches or where the coadd is missing."""
    from rc2_platform.validate.patch_maps import truth_patches

    where = truth_patches(truth, patches)
    ra, dec = np.asarray(truth["ra"], float), np.asarray(truth["dec"], float)
    refs = {
        (int(d["tract"]), int(d["patch"]), str(d["band"])): ref
        for ref in butler.query_datasets("deepCoadd", collections=[run])
        for d in [ref.data_id.to_dict()]
    }
    out = {band: np.full(len(truth), np.nan) for band in bands}
    for k, patch in enumerate(patches):
        rows = np.nonzero(where == k)[0]
        tract = int(getattr(patch.tract, "id", 0))
        for band in bands:
            ref = refs.get((tract, int(patch.sequential_id), band))
            if ref is None or not len(rows):
                continue
            coadd = butler.get(ref)
            fwhm = float(coadd.header.get("PSF_FWHM", np.nan))
            if coadd.wcs is None or coadd.variance is None or not np.isfinite(fwhm):
                continue
            x, y = coadd.wcs.world_to_pixel_values(ra[rows], dec[rows])
            out[band][rows] = depth_at(coadd.variance, coadd.mask, fwhm, x, y)
    return out
