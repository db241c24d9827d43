"""Batched per-source measurement kernels on stacks of stamps (private to measurement).

Every source of a batch has its own ``S x S`` stamp (``S = 2 half + 1``) centred on the
pixel nearest its position; the kernels below work on ``(N, S, S)`` arrays at once, with
per-source convergence masks for the iterative centroid and adaptive moments, so the
cost per source is a few array operations instead of a Python loop of small ones.
Each kernel computes, per source, exactly what a loop over sources would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import erf

from rc2_platform.tasks.algorithms.mask_bits import BAD, CR, NO_DATA, SAT

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

SUBSAMPLE = 7
"""Sub-pixels per axis used to compute the pixel/aperture overlap."""

_OFFSETS = (np.arange(SUBSAMPLE) + 0.5) / SUBSAMPLE - 0.5
_REACH = 0.5 - 0.5 / SUBSAMPLE  # largest sub-pixel offset from a pixel centre
_EPS = 1e-9

ChildFootprint = tuple[NDArray[np.integer], NDArray[np.integer], NDArray[np.floating]]
"""A deblended child's flux: ``(ys, xs, values)`` pixel arrays in the image frame."""


@dataclass
class Stamps:
    """``N`` stamps of side ``S``: pixels outside the image are NaN (mask NO_DATA)."""

    image: FloatArray  # (N, S, S)
    variance: FloatArray  # (N, S, S)
    mask: NDArray[np.int32]  # (N, S, S)
    xs: FloatArray  # (N, 1, S): image x of each stamp column
    ys: FloatArray  # (N, S, 1): image y of each stamp row

    @property
    def size(self) -> int:
        """Side ``S`` of the stamps."""
        return int(self.image.shape[-1])

    def inner(self, half: int) -> Stamps:
        """The central ``2 half + 1`` pixels of every stamp (views, no copies)."""
        outer = self.size // 2
        if half >= outer:
            return self
        sl = slice(outer - half, outer + half + 1)
        return Stamps(
            self.image[:, sl, sl],
            self.variance[:, sl, sl],
            self.mask[:, sl, sl],
            self.xs[:, :, sl],
            self.ys[:, sl, :],
        )


class PaddedImage:
    """An image, its variance and mask padded by NaN / NO_DATA, to cut stamps from."""

    def __init__(
        self,
        image: NDArray[np.floating],
        variance: NDArray[np.floating],
        mask: NDArray[np.integer] | None,
        half: int,
    ) -> None:
        self.half, self.pad = half, half + 1
        self.shape = image.shape
        p = self.pad
        self.image = np.pad(np.asarray(image, float), p, constant_values=np.nan)
        self.variance = np.pad(np.asarray(variance, float), p, constant_values=np.nan)
        inner = np.zeros(image.shape, np.int32) if mask is None else np.asarray(mask, np.int32)
        self.mask = np.pad(inner, p, constant_values=NO_DATA)

    def cut(self, x: FloatArray, y: FloatArray) -> Stamps:
        """Stamps centred on the pixels nearest (x, y)."""
        ny, nx = self.shape
        half, p = self.half, self.pad
        size = 2 * half + 1
        xc = np.clip(np.rint(x), -p, nx - 1 + p).astype(np.int64)
        yc = np.clip(np.rint(y), -p, ny - 1 + p).astype(np.int64)
        steps = np.arange(size)
        cols = np.clip(xc[:, None] - half + steps + p, 0, nx + 2 * p - 1)
        rows = np.clip(yc[:, None] - half + steps + p, 0, ny + 2 * p - 1)
        index = (rows[:, :, None], cols[:, None, :])
        return Stamps(
            self.image[index],
            self.variance[index],
            self.mask[index],
            (xc[:, None] - half + steps).astype(float)[:, None, :],
            (yc[:, None] - half + steps).astype(float)[:, :, None],
        )


def add_children(stamps: Stamps, children: Sequence[ChildFootprint | None]) -> None:
    """Add each source's own deblended flux to its stamp (pixels outside it ignored)."""
    size = stamps.size
    ks, sys_, sxs, vals = [], [], [], []
    for k, child in enumerate(children):
        if child is None:
            continue
        cy, cx, values = child
        sx = np.asarray(cx) - int(stamps.xs[k, 0, 0])
        sy = np.asarray(cy) - int(stamps.ys[k, 0, 0])
        inside = (sx >= 0) & (sx < size) & (sy >= 0) & (sy < size)
        ks.append(np.full(int(inside.sum()), k))
        sys_.append(sy[inside])
        sxs.append(sx[inside])
        vals.append(np.asarray(values, dtype=float)[inside])
    if ks:
        np.add.at(
            stamps.image,
            (np.concatenate(ks), np.concatenate(sys_), np.concatenate(sxs)),
            np.concatenate(vals),
        )


def centroids(
    stamps: Stamps, x0: FloatArray, y0: FloatArray, sigma: float, max_iter: int = 20
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Iterated Gaussian-weighted centroids; a failed source keeps (x0, y0), ok False.

    Failure: no positive weighted flux, or a move of more than ``max(2, 2 sigma)`` pixels.
    """
    img = np.where(np.isfinite(stamps.image), stamps.image, 0.0)
    xs, ys = stamps.xs[:, 0, :], stamps.ys[:, :, 0]  # (n, S): the weight is separable
    x, y = x0.astype(float).copy(), y0.astype(float).copy()
    ok = np.ones(len(x), dtype=bool)
    active = np.arange(len(x))
    limit = max(2.0, 2 * sigma)
    for _ in range(max_iter):
        if not len(active):
            break
        wx = np.exp(-0.5 * (xs - x[active, None]) ** 2 / sigma**2)
        wy = np.exp(-0.5 * (ys - y[active, None]) ** 2 / sigma**2)
        cols = np.einsum("ni,nij->nj", wy, img)  # sum over rows, weighted
        rows = np.einsum("nij,nj->ni", img, wx)  # sum over columns, weighted
        norm = np.einsum("nj,nj->n", cols, wx)
        bad = ~(norm > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            nx_ = np.einsum("nj,nj->n", cols, wx * xs) / norm
            ny_ = np.einsum("ni,ni->n", rows, wy * ys) / norm
        done = (np.abs(nx_ - x[active]) < 1e-4) & (np.abs(ny_ - y[active]) < 1e-4)
        far = ~bad & (np.hypot(nx_ - x0[active], ny_ - y0[active]) > limit)
        fail = bad | far
        move = ~bad
        x[active[move]], y[active[move]] = nx_[move], ny_[move]
        x[active[fail]], y[active[fail]] = x0[active[fail]], y0[active[fail]]
        ok[active[fail]] = False
        keep = ~fail & ~done
        active = active[keep]
        if not keep.all():
            img, xs, ys = img[keep], xs[keep], ys[keep]
    return x, y, ok


def core_flags(stamps: Stamps, x: FloatArray, y: FloatArray, sigma: float) -> dict[str, BoolArray]:
    """Mask bits within ``2 sigma`` of each centre: edge (NO_DATA), bad, saturated, cr."""
    core = (stamps.xs - x[:, None, None]) ** 2 + (stamps.ys - y[:, None, None]) ** 2 <= (
        2.0 * sigma
    ) ** 2
    bits = np.bitwise_or.reduce(np.where(core, stamps.mask, 0), axis=(1, 2))
    return {
        "flag_edge": (bits & NO_DATA) != 0,
        "flag_bad": (bits & BAD) != 0,
        "flag_saturated": (bits & SAT) != 0,
        "flag_cr": (bits & CR) != 0,
    }


def psf_fluxes(
    stamps: Stamps, x: FloatArray, y: FloatArray, sigma: float
) -> tuple[FloatArray, FloatArray]:
    """Linear fit of a pixel-integrated circular Gaussian at each centre: flux, error."""
    good = np.isfinite(stamps.image) & np.isfinite(stamps.variance)
    s = sigma * math.sqrt(2.0)
    dx = stamps.xs - x[:, None, None]
    dy = stamps.ys - y[:, None, None]
    fx = 0.5 * (erf((dx + 0.5) / s) - erf((dx - 0.5) / s))
    fy = 0.5 * (erf((dy + 0.5) / s) - erf((dy - 0.5) / s))
    model = fx * fy * good
    denom = (model**2).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        flux = (model * np.where(good, stamps.image, 0.0)).sum(axis=(1, 2)) / denom
        err = np.sqrt((model**2 * np.where(good, stamps.variance, 0.0)).sum(axis=(1, 2))) / denom
    positive = denom > 0
    return np.where(positive, flux, np.nan), np.where(positive, err, np.nan)


def aperture_weights(
    xs: FloatArray, ys: FloatArray, x: FloatArray, y: FloatArray, radius: float
) -> FloatArray:
    """Fraction of each stamp pixel inside a circle, by ``SUBSAMPLE``^2 sub-pixel sampling.

    Only pixels crossed by the circle are sub-sampled; the others are 0 or 1, which is
    what their sub-pixels would give.
    """
    dx = np.broadcast_to(xs - x[:, None, None], (len(x), ys.shape[1], xs.shape[2]))
    dy = np.broadcast_to(ys - y[:, None, None], dx.shape)
    ax, ay = np.abs(dx), np.abs(dy)
    far = (ax + _REACH) ** 2 + (ay + _REACH) ** 2
    near = np.maximum(ax - _REACH, 0.0) ** 2 + np.maximum(ay - _REACH, 0.0) ** 2
    r2 = radius**2
    weights = (far < r2 - _EPS).astype(float)
    cross = ~(far < r2 - _EPS) & ~(near > r2 + _EPS)
    if cross.any():
        # Per sub-row, the sub-columns inside the circle are those with |dx + o| <= h,
        # h = sqrt(r^2 - (dy + o_row)^2): count them from the interval's ends instead of
        # testing all SUBSAMPLE^2 points.
        cx = dx[cross][:, None]
        half = np.sqrt(np.clip(r2 - (dy[cross][:, None] + _OFFSETS[None, :]) ** 2, 0.0, None))
        first = np.ceil(SUBSAMPLE * (-half - cx + 0.5) - 0.5)
        last = np.floor(SUBSAMPLE * (half - cx + 0.5) - 0.5)
        inside = np.clip(np.minimum(last, SUBSAMPLE - 1) - np.maximum(first, 0) + 1, 0, None)
        inside[(r2 - (dy[cross][:, None] + _OFFSETS[None, :]) ** 2) < 0] = 0
        weights[cross] = inside.sum(axis=1) / SUBSAMPLE**2
    return weights


def aperture_fluxes(
    stamps: Stamps, x: FloatArray, y: FloatArray, radius: float
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Circular-aperture fluxes, errors, and whether the aperture touches missing pixels.

    Uses the central pixels of the stamps that hold every circle (the stamps are centred
    on the initial positions; centroids may have moved a little).
    """
    centre = stamps.size // 2
    shift = max(
        float(np.max(np.abs(x - stamps.xs[:, 0, centre]), initial=0.0)),
        float(np.max(np.abs(y - stamps.ys[:, centre, 0]), initial=0.0)),
    )
    stamps = stamps.inner(int(math.ceil(radius + shift + 0.5)) + 1)
    good = np.isfinite(stamps.image) & np.isfinite(stamps.variance)
    w = aperture_weights(stamps.xs, stamps.ys, x, y, radius)
    flux = (w * np.where(good, stamps.image, 0.0)).sum(axis=(1, 2))
    err = np.sqrt((w**2 * np.where(good, stamps.variance, 0.0)).sum(axis=(1, 2)))
    touches: BoolArray = np.asarray(((w > 0) & ~good).any(axis=(1, 2)))
    return flux, err, touches


def adaptive_moments(
    stamps: Stamps,
    x: FloatArray,
    y: FloatArray,
    sigma0: float,
    max_iter: int = 30,
    rtol: float = 1e-4,
) -> tuple[FloatArray, FloatArray, FloatArray, BoolArray]:
    """Adaptive second moments (Ixx, Iyy, Ixy) in pixel^2 and an ok flag per source.

    The Gaussian weight's covariance W is iterated to the source covariance
    M = (Mw^-1 - W^-1)^-1 (Mw: weighted moments): W <- M until every element changes by
    less than ``rtol`` (LSST's SdssShape size tolerance) or ``max_iter`` steps. At the
    fixed point W = M, which for a Gaussian source is its true covariance (including
    pixelization); the first step is exact for a Gaussian. A source fails (NaN, ok
    False) when the weighted flux is not positive or M is not positive definite.
    """
    n = len(x)
    img = np.where(np.isfinite(stamps.image), stamps.image, 0.0)
    dx = stamps.xs - x[:, None, None]
    dy = stamps.ys - y[:, None, None]
    # (xx, xy, yy) products per pixel: (n, 3, S, S)
    prods = np.stack(np.broadcast_arrays(dx * dx, dx * dy, dy * dy), axis=1)
    w = np.tile(np.array([sigma0**2, 0.0, sigma0**2]), (n, 1))  # (xx, xy, yy)
    m = w.copy()
    ok = np.ones(n, dtype=bool)
    active = np.arange(n)
    cap = 100 * sigma0**2
    with np.errstate(all="ignore"):
        for _ in range(max_iter):
            if not len(active):
                break
            wa = w[active]
            inv = _inv2(wa)
            coeff = inv * np.array([-0.5, -1.0, -0.5])
            wi = np.exp(np.einsum("nk,nkij->nij", coeff, prods)) * img
            norm = wi.sum(axis=(1, 2))
            mw = np.einsum("nij,nkij->nk", wi, prods) / norm[:, None]
            diff = _inv2(mw) - inv
            det = diff[:, 0] * diff[:, 2] - diff[:, 1] ** 2
            fail = ~(norm > 0) | ~(_det2(mw) != 0) | ~(det > 0) | ~(diff[:, 0] > 0)
            new = np.clip(_inv2(diff), -cap, cap)
            fail |= ~np.isfinite(new).all(axis=1)
            conv = (np.abs(new - wa) <= 1e-6 + rtol * np.abs(wa)).all(axis=1)
            m[active] = new
            ok[active[fail]] = False
            step = ~fail & ~conv
            grow = step & (new[:, 0] + new[:, 2] > 0)
            w[active[grow]] = new[grow]
            active = active[step]
            if not step.all():
                img, prods = img[step], prods[step]
    m[~ok] = np.nan
    return m[:, 0], m[:, 2], m[:, 1], ok


def _det2(a: FloatArray) -> FloatArray:
    return np.asarray(a[:, 0] * a[:, 2] - a[:, 1] ** 2)


def _inv2(a: FloatArray) -> FloatArray:
    """Inverses of symmetric 2x2 matrices stored as (xx, xy, yy) rows."""
    det = _det2(a)
    return np.stack([a[:, 2] / det, -a[:, 1] / det, a[:, 0] / det], axis=1)
