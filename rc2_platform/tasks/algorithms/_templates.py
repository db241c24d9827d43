"""Symmetric, monotonic deblending templates (private to :mod:`.multiband`)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage


def split_footprint(
    sub: NDArray[np.float64],
    foot: NDArray[np.bool_],
    px: NDArray[np.float64],
    py: NDArray[np.float64],
) -> list[NDArray[np.float64]]:
    """Share the footprint's pixels among peaks: symmetric templates about each peak's
    sub-pixel position, made monotonic (:func:`_monotonic`), shared in proportion; pixels
    no template reaches go to the nearest peak."""
    inside = np.where(foot, sub, 0.0)
    if len(px) == 1:
        return [inside]
    ny, nx = sub.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    templates = []
    for x0, y0 in zip(px, py, strict=True):
        # Mirror through the sub-pixel peak (bilinear interpolation): a template symmetric
        # about the peak *pixel* is off-centre by up to half a pixel, and so is the child
        # (rc2-pixels i coadds of 2 visits, isolated S/N > 100 stars: centroid scatter
        # 0.0166/0.0134 px -> 0.0147/0.0114 px in x/y; 0.008 px without deblending).
        cx, cy = _subpixel_peak(inside, x0, y0)
        fy, fx = 2 * cy - yy, 2 * cx - xx
        my, mx = np.rint(fy).astype(int), np.rint(fx).astype(int)
        ok = (fy >= 0) & (fy <= ny - 1) & (fx >= 0) & (fx <= nx - 1)
        ok &= foot & foot[np.clip(my, 0, ny - 1), np.clip(mx, 0, nx - 1)]
        mirror = np.zeros_like(sub)
        mirror[ok] = ndimage.map_coordinates(inside, [fy[ok], fx[ok]], order=1, mode="nearest")
        template = np.where(ok, np.clip(np.minimum(inside, mirror), 0.0, None), 0.0)
        templates.append(_monotonic(template, cx, cy))
    tsum = np.sum(templates, axis=0)
    dist = np.stack([(xx - x0) ** 2 + (yy - y0) ** 2 for x0, y0 in zip(px, py, strict=True)])
    nearest = np.argmin(dist, axis=0)
    out = []
    for k, t in enumerate(templates):
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(
                tsum > 0, t / np.where(tsum > 0, tsum, 1.0), (nearest == k).astype(float)
            )
        out.append(inside * share)
    return out


def _monotonic(template: NDArray[np.float64], cx: float, cy: float) -> NDArray[np.float64]:
    """Clip a template to be non-increasing outward from its peak (LSST meas_deblender's
    monotonic templates): every pixel is at most its neighbour one step towards
    ``(cx, cy)``, pixels taken in order of distance.

    In a crowded footprint the mirror of a neighbour's pixel often lands on another star,
    so a symmetric template alone keeps flux of that star and takes it from its child
    (rc2-pixels' full-depth coadds: children's centroids 3x the scatter of the same
    stars' centroids on the image); a monotonic template cannot rise again past the
    saddle between two stars.
    """
    rows, cols = np.nonzero(template > 0)
    if not len(rows):
        return template
    # Only the box of the positive pixels (and the peak) can change.
    ny_all, nx_all = template.shape
    iy = min(max(int(round(cy)), 0), ny_all - 1)
    ix = min(max(int(round(cx)), 0), nx_all - 1)
    y0, y1 = min(int(rows.min()), iy), max(int(rows.max()), iy) + 1
    x0, x1 = min(int(cols.min()), ix), max(int(cols.max()), ix) + 1
    out = np.zeros_like(template)
    out[y0:y1, x0:x1] = _monotonic_box(template[y0:y1, x0:x1], cx - x0, cy - y0)
    return out


def _monotonic_box(template: NDArray[np.float64], cx: float, cy: float) -> NDArray[np.float64]:
    """:func:`_monotonic` on an array that holds every positive pixel."""
    ny, nx = template.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    dx, dy = xx - cx, yy - cy
    r = np.hypot(dx, dy)
    with np.errstate(invalid="ignore", divide="ignore"):
        sx = np.where(r > 0.5, np.rint(dx / r), 0).astype(int)
        sy = np.where(r > 0.5, np.rint(dy / r), 0).astype(int)
    qx, qy = np.clip(xx - sx, 0, nx - 1), np.clip(yy - sy, 0, ny - 1)
    out = template.copy()
    ring = np.floor(r).astype(int)
    order = np.argsort(ring, axis=None, kind="stable")
    ring_sorted = ring.ravel()[order]
    bounds = np.searchsorted(ring_sorted, np.arange(1, ring_sorted[-1] + 2))
    flat, qflat = out.reshape(-1), (qy * nx + qx).ravel()
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        idx = order[lo:hi]
        flat[idx] = np.minimum(flat[idx], flat[qflat[idx]])
    return out


def _subpixel_peak(image: NDArray[np.float64], x0: float, y0: float) -> tuple[float, float]:
    """Peak position to a fraction of a pixel: per axis, the vertex of a Gaussian (a
    parabola in log) through the peak pixel and its two neighbours; the pixel itself
    where the three are not all positive, the image ends or the vertex is more than
    half a pixel away (a noise peak, a saturated core)."""
    ny, nx = image.shape
    ix, iy = int(round(x0)), int(round(y0))
    out = [float(ix), float(iy)]
    for axis, (i, n) in enumerate(((ix, nx), (iy, ny))):
        if not (0 < i < n - 1) or not (0 <= iy < ny and 0 <= ix < nx):
            continue
        if axis == 0:
            trio = image[iy, ix - 1 : ix + 2]
        else:
            trio = image[iy - 1 : iy + 2, ix]
        if not (np.all(np.isfinite(trio)) and np.all(trio > 0)):
            continue
        lm, l0, lp = np.log(trio)
        curvature = lm - 2.0 * l0 + lp
        if curvature >= 0:
            continue
        step = 0.5 * (lm - lp) / curvature
        if abs(step) <= 0.5:
            out[axis] += float(step)
    return out[0], out[1]
