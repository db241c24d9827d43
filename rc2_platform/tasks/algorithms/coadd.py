"""Coadding warps: clipped, weighted mean stack and bright-object masks (assembleCoadd).

Compared with LSST's ``AssembleCoaddTask`` / ``CompareWarpAssembleCoaddTask``: the
same weighting (one inverse-mean-variance weight per warp, so bright stars are not
biased by Poisson-dependent pixel weights) and an outlier rejection per pixel
against the median of the inputs, with a tolerance of ``nsigma`` times the input's
own noise plus a fraction of the median (so PSF differences between visits in star
cores are not clipped). LSST instead detects artefacts as connected regions in
warp-minus-PSF-matched-template difference images and also matches PSFs; here a
transient present in a single visit is removed pixel by pixel, which needs at least
three inputs to be reliable. No coadd PSF model is built; the caller can combine
input FWHMs with :func:`coadd_psf_fwhm`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from numpy.typing import NDArray

from rc2_platform.tasks.algorithms._sky import tan_project
from rc2_platform.tasks.algorithms.mask_bits import BAD, BRIGHT_OBJECT, CLIPPED, CR, NO_DATA, SAT

COADD_REJECT_BITS = NO_DATA | BAD | CR | SAT
"""Input pixels with these bits are left out of the stack."""

COADD_PROPAGATE_BITS = SAT | BAD
"""Bits ORed into the coadd mask from every input (even when that input was left out)."""


@dataclass(frozen=True)
class CircleRegion:
    """A circular bright-object mask: centre (deg) and radius (arcsec)."""

    ra: float
    dec: float
    radius_arcsec: float


@dataclass(frozen=True)
class PolygonRegion:
    """A polygonal bright-object mask with (ra, dec) vertices in degrees."""

    vertices: tuple[tuple[float, float], ...]


@dataclass
class CoaddResult:
    """Output of :func:`assemble_coadd`.

    Attributes
    ----------
    image, variance : numpy.ndarray
        float32 coadd (nJy) and its variance; 0 where NO_DATA.
    mask : numpy.ndarray
        int32 mask: NO_DATA, CLIPPED, BRIGHT_OBJECT and propagated SAT/BAD.
    n_inputs : numpy.ndarray
        int16 number of inputs used per pixel.
    weights : numpy.ndarray
        The weight of each warp.
    pixels_used : numpy.ndarray
        Per warp, how many coadd pixels it contributes to (after rejection): with
        ``weights`` the share of the coadd each warp's PSF has (a warp grazing a corner
        of the patch barely shapes its PSF).
    """

    image: NDArray[np.float32]
    variance: NDArray[np.float32]
    mask: NDArray[np.int32]
    n_inputs: NDArray[np.int16]
    weights: NDArray[np.float64]
    pixels_used: NDArray[np.int64]


def assemble_coadd(
    images: Sequence[NDArray[np.floating]],
    variances: Sequence[NDArray[np.floating]],
    masks: Sequence[NDArray[np.integer]],
    *,
    nsigma: float = 4.0,
    frac_tolerance: float = 0.1,
    bright_object_mask: NDArray[np.bool_] | None = None,
) -> CoaddResult:
    """Stack warps on a common grid with per-warp weights and outlier clipping.

    Parameters
    ----------
    images, variances, masks : sequences of numpy.ndarray
        Warps (nJy), all of one shape.
    nsigma : float
        A pixel is rejected if ``|value - median| > nsigma sqrt(var) + frac_tolerance |median|``
        (only when at least three inputs cover the pixel).
    frac_tolerance : float
        Fractional tolerance protecting bright cores from PSF differences.
    bright_object_mask : numpy.ndarray, optional
        Boolean map (see :func:`bright_object_mask`) to set BRIGHT_OBJECT.

    Returns
    -------
    CoaddResult

    Raises
    ------
    ValueError
        If no warp is given or shapes differ.
    """
    if not images:
        raise ValueError("assemble_coadd needs at least one warp")
    img = np.stack([np.asarray(a, dtype=float) for a in images])
    var = np.stack([np.asarray(a, dtype=float) for a in variances])
    msk = np.stack([np.asarray(a, dtype=np.int32) for a in masks])
    valid = ((msk & COADD_REJECT_BITS) == 0) & np.isfinite(img) & np.isfinite(var) & (var > 0)
    weights = np.array(
        [
            1.0 / float(np.median(var[k][valid[k]])) if valid[k].any() else 0.0
            for k in range(len(img))
        ]
    )
    n_valid = valid.sum(axis=0)
    median = _median_of_valid(img, valid, n_valid)
    tol = nsigma * np.sqrt(np.where(valid, var, 0.0)) + frac_tolerance * np.abs(median)[None]
    outlier = valid & (np.abs(img - median[None]) > tol) & (n_valid >= 3)[None]
    use = valid & ~outlier
    w = np.where(use, weights[:, None, None], 0.0)
    wsum = w.sum(axis=0)
    has = wsum > 0
    safe = np.where(has, wsum, 1.0)
    coadd = np.where(has, (w * np.where(use, img, 0.0)).sum(axis=0) / safe, 0.0)
    coadd_var = np.where(has, (w**2 * np.where(use, var, 0.0)).sum(axis=0) / safe**2, 0.0)
    mask = np.bitwise_or.reduce(msk & COADD_PROPAGATE_BITS, axis=0).astype(np.int32)
    mask[~has] |= NO_DATA
    mask[outlier.any(axis=0)] |= CLIPPED
    if bright_object_mask is not None:
        mask[bright_object_mask] |= BRIGHT_OBJECT
    return CoaddResult(
        coadd.astype(np.float32),
        coadd_var.astype(np.float32),
        mask,
        use.sum(axis=0).astype(np.int16),
        weights,
        use.sum(axis=(1, 2)).astype(np.int64),
    )


def _median_of_valid(
    img: NDArray[np.float64], valid: NDArray[np.bool_], n_valid: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Per pixel, the median of the valid inputs (NaN where none): ``np.nanmedian`` of
    the stack, by one sort along the input axis (NaN sorts last)."""
    stack = np.sort(np.where(valid, img, np.nan), axis=0)
    lo = np.clip((n_valid - 1) // 2, 0, None)[None]
    hi = np.clip(n_valid // 2, 0, len(img) - 1)[None]
    median = 0.5 * (
        np.take_along_axis(stack, lo, axis=0)[0] + np.take_along_axis(stack, hi, axis=0)[0]
    )
    return np.where(n_valid > 0, median, np.nan)


def coadd_psf_fwhm(fwhms: Sequence[float], weights: Sequence[float]) -> float:
    """Approximate coadd PSF FWHM: weighted rms of the input FWHMs (Gaussian PSFs).

    A coadd pixel's PSF is the weighted mean of the PSFs of the warps used there, whose
    second moment is the weighted mean of theirs; over a patch, each warp's weight should
    be its pixel weight times the pixels it is used on (``CoaddResult.weights *
    CoaddResult.pixels_used``), or a warp grazing a corner counts as much as one covering
    the patch.
    """
    f, w = np.asarray(fwhms, float), np.asarray(weights, float)
    return float(np.sqrt(np.sum(w * f**2) / np.sum(w)))


def bright_object_mask(
    regions: Sequence[CircleRegion | PolygonRegion],
    wcs: WCS,
    shape: tuple[int, int],
    *,
    origin: tuple[int, int] = (0, 0),
) -> NDArray[np.bool_]:
    """Rasterize bright-object regions onto a pixel grid.

    Circles and polygons are evaluated in the tangent plane at each region's centre
    (exact enough for regions of arcminutes); a pixel is inside if its centre is. Only
    the pixels of a box around each region are evaluated.

    Parameters
    ----------
    regions : sequence of CircleRegion or PolygonRegion
    wcs : astropy.wcs.WCS
        The grid's WCS; ``origin`` is the (x0, y0) of array pixel (0, 0).
    shape : tuple[int, int]
        (ny, nx) of the grid.
    """
    out = np.zeros(shape, dtype=bool)
    if not regions:
        return out
    for region in regions:
        box = _region_box(region, wcs, shape, origin)
        if box is None:
            continue
        y0, y1, x0, x1 = box
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(float)
        ra, dec = (np.asarray(v) for v in wcs.pixel_to_world_values(xx + origin[0], yy + origin[1]))
        if isinstance(region, CircleRegion):
            xi, eta = tan_project(ra, dec, region.ra, region.dec)
            out[y0:y1, x0:x1] |= np.hypot(xi, eta) * 3600.0 <= region.radius_arcsec
        else:
            verts = np.asarray(region.vertices, dtype=float)
            c_ra, c_dec = float(np.mean(verts[:, 0])), float(np.mean(verts[:, 1]))
            xi, eta = tan_project(ra, dec, c_ra, c_dec)
            vx, vy = tan_project(verts[:, 0], verts[:, 1], c_ra, c_dec)
            out[y0:y1, x0:x1] |= _points_in_polygon(xi, eta, vx, vy)
    return out


def _region_box(
    region: CircleRegion | PolygonRegion,
    wcs: WCS,
    shape: tuple[int, int],
    origin: tuple[int, int],
) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of the grid pixels that may lie in ``region`` (None: no pixel).

    A box around the region's extent in pixels, widened by 5 % and 2 pixels (the grid
    is a TAN projection: distances change by far less than that over a patch).
    """
    if isinstance(region, CircleRegion):
        ras, decs = np.array([region.ra]), np.array([region.dec])
        reach_deg = region.radius_arcsec / 3600.0
    else:
        verts = np.asarray(region.vertices, dtype=float)
        ras, decs, reach_deg = verts[:, 0], verts[:, 1], 0.0
    px, py = (np.asarray(v, float) for v in wcs.world_to_pixel_values(ras, decs))
    if not (np.isfinite(px).all() and np.isfinite(py).all()):
        return 0, shape[0], 0, shape[1]
    scale = float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix))))
    reach = 1.05 * reach_deg / scale + 2.0
    x0 = max(int(np.floor(px.min() - origin[0] - reach)), 0)
    x1 = min(int(np.ceil(px.max() - origin[0] + reach)) + 1, shape[1])
    y0 = max(int(np.floor(py.min() - origin[1] - reach)), 0)
    y1 = min(int(np.ceil(py.max() - origin[1] + reach)) + 1, shape[0])
    if x0 >= x1 or y0 >= y1:
        return None
    return y0, y1, x0, x1


def _points_in_polygon(
    px: NDArray[np.float64],
    py: NDArray[np.float64],
    vx: NDArray[np.float64],
    vy: NDArray[np.float64],
) -> NDArray[np.bool_]:
    """Even-odd rule point-in-polygon test, vectorised over points."""
    inside = np.zeros(px.shape, dtype=bool)
    n = len(vx)
    for i in range(n):
        x1, y1, x2, y2 = vx[i], vy[i], vx[(i + 1) % n], vy[(i + 1) % n]
        if y1 == y2:
            continue
        crosses = (py >= min(y1, y2)) & (py < max(y1, y2))
        x_at = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (px < x_at)
    return inside
