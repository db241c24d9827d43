"""Per-source measurement: centroid, aperture and PSF fluxes, adaptive second moments.

Compared with LSST's ``SingleFrameMeasurementTask`` plugins: the centroid is an
iterated Gaussian-weighted first moment (like ``base_SdssCentroid`` without its
bias correction), aperture fluxes use sub-pixel sampling of the circle (like
``base_CircularApertureFlux`` but without sinc interpolation for small radii), the
PSF flux is a linear fit of a circular Gaussian PSF at the centroid (LSST fits the
PSF model image), and the shape is an adaptive Gaussian-weighted second moment with
the weight deconvolved analytically (exact for Gaussian sources, like
``base_SdssShape`` without its higher-order corrections). No aperture corrections,
no blendedness, no extendedness classifier.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import ArrayLike, NDArray

from rc2_platform.tasks.algorithms._psf import pixel_integrated_gaussian
from rc2_platform.tasks.algorithms.mask_bits import BAD, CR, NO_DATA, SAT

SUBSAMPLE = 7
"""Sub-pixels per axis used to compute the pixel/aperture overlap."""


@dataclass
class _Stamp:
    image: NDArray[np.float64]
    variance: NDArray[np.float64]
    mask: NDArray[np.int32]
    xs: NDArray[np.float64]  # pixel x coordinate of each stamp column (full-image frame)
    ys: NDArray[np.float64]
    edge: bool


def _cut_stamp(
    image: NDArray[np.floating],
    variance: NDArray[np.floating],
    mask: NDArray[np.integer] | None,
    x: float,
    y: float,
    half: int,
) -> _Stamp:
    """Cut a (2 half + 1)^2 stamp centred on the nearest pixel; outside pixels are NaN."""
    ny, nx = image.shape
    xc, yc = int(round(x)), int(round(y))
    size = 2 * half + 1
    img = np.full((size, size), np.nan)
    var = np.full((size, size), np.nan)
    msk = np.full((size, size), NO_DATA, dtype=np.int32)
    x0, y0 = xc - half, yc - half
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + size, nx), min(y0 + size, ny)
    edge = sx0 != x0 or sy0 != y0 or sx1 != x0 + size or sy1 != y0 + size
    if sx1 > sx0 and sy1 > sy0:
        dst = (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
        img[dst] = image[sy0:sy1, sx0:sx1]
        var[dst] = variance[sy0:sy1, sx0:sx1]
        msk[dst] = 0 if mask is None else mask[sy0:sy1, sx0:sx1]
    xs = np.arange(x0, x0 + size, dtype=float)[None, :] * np.ones((size, 1))
    ys = np.arange(y0, y0 + size, dtype=float)[:, None] * np.ones((1, size))
    return _Stamp(img, var, msk, xs, ys, edge)


def gaussian_centroid(
    stamp: NDArray[np.float64],
    xs: NDArray[np.float64],
    ys: NDArray[np.float64],
    x0: float,
    y0: float,
    sigma: float,
    max_iter: int = 20,
) -> tuple[float, float, bool]:
    """Iterated Gaussian-weighted centroid; returns (x, y, ok)."""
    good = np.isfinite(stamp)
    img = np.where(good, stamp, 0.0)
    x, y = x0, y0
    for _ in range(max_iter):
        w = np.exp(-0.5 * ((xs - x) ** 2 + (ys - y) ** 2) / sigma**2) * good
        norm = float(np.sum(w * img))
        if norm <= 0:
            return x0, y0, False
        nx_, ny_ = float(np.sum(w * img * xs)) / norm, float(np.sum(w * img * ys)) / norm
        done = abs(nx_ - x) < 1e-4 and abs(ny_ - y) < 1e-4
        x, y = nx_, ny_
        if math.hypot(x - x0, y - y0) > max(2.0, 2 * sigma):
            return x0, y0, False
        if done:
            break
    return x, y, True


def aperture_weights(
    xs: NDArray[np.float64], ys: NDArray[np.float64], x: float, y: float, radius: float
) -> NDArray[np.float64]:
    """Fraction of each pixel inside a circle, by ``SUBSAMPLE``^2 sub-pixel sampling."""
    offsets = (np.arange(SUBSAMPLE) + 0.5) / SUBSAMPLE - 0.5
    dx = (xs - x)[..., None, None] + offsets[None, None, None, :]
    dy = (ys - y)[..., None, None] + offsets[None, None, :, None]
    inside = dx**2 + dy**2 <= radius**2
    return np.asarray(inside.mean(axis=(-2, -1)))


def adaptive_moments(
    stamp: NDArray[np.float64],
    xs: NDArray[np.float64],
    ys: NDArray[np.float64],
    x: float,
    y: float,
    sigma0: float,
    max_iter: int = 30,
) -> tuple[float, float, float, bool]:
    """Adaptive second moments (Ixx, Iyy, Ixy) in pixel^2; returns also an ok flag.

    The Gaussian weight's covariance W is iterated to the source covariance
    M = (Mw^-1 - W^-1)^-1, where Mw are the weighted moments; at convergence W = M,
    which for a Gaussian source is its true covariance (including pixelization).
    """
    good = np.isfinite(stamp)
    img = np.where(good, stamp, 0.0)
    dx, dy = xs - x, ys - y
    w_cov = np.array([[sigma0**2, 0.0], [0.0, sigma0**2]])
    m_est = w_cov
    for _ in range(max_iter):
        inv = np.linalg.inv(w_cov)
        q = inv[0, 0] * dx**2 + 2 * inv[0, 1] * dx * dy + inv[1, 1] * dy**2
        wi = np.exp(-0.5 * q) * good * img
        norm = float(wi.sum())
        if norm <= 0:
            return math.nan, math.nan, math.nan, False
        mw = (
            np.array(
                [
                    [float((wi * dx * dx).sum()), float((wi * dx * dy).sum())],
                    [float((wi * dx * dy).sum()), float((wi * dy * dy).sum())],
                ]
            )
            / norm
        )
        try:
            diff = np.linalg.inv(mw) - inv
            if np.linalg.det(diff) <= 0 or diff[0, 0] <= 0:
                return math.nan, math.nan, math.nan, False
            m_est = np.linalg.inv(diff)
        except np.linalg.LinAlgError:
            return math.nan, math.nan, math.nan, False
        m_est = np.clip(m_est, -100 * sigma0**2, 100 * sigma0**2)
        if np.allclose(m_est, w_cov, rtol=1e-5, atol=1e-6):
            break
        w_cov = 0.5 * (w_cov + m_est) if np.trace(m_est) > 0 else w_cov
    return float(m_est[0, 0]), float(m_est[1, 1]), float(m_est[0, 1]), True


def _psf_flux(st: _Stamp, x: float, y: float, psf_sigma: float) -> tuple[float, float]:
    good = np.isfinite(st.image) & np.isfinite(st.variance)
    model = pixel_integrated_gaussian(st.xs, st.ys, x, y, psf_sigma) * good
    denom = float((model**2).sum())
    if denom <= 0:
        return math.nan, math.nan
    flux = float((model * np.where(good, st.image, 0.0)).sum()) / denom
    err = math.sqrt(float((model**2 * np.where(good, st.variance, 0.0)).sum())) / denom
    return flux, err


def measure_sources(
    image: NDArray[np.floating],
    variance: NDArray[np.floating],
    x: ArrayLike,
    y: ArrayLike,
    *,
    psf_sigma: float,
    mask: NDArray[np.integer] | None = None,
    aperture_radii: Sequence[float] = (3.0, 6.0, 12.0),
    fit_centroid: bool = True,
    fit_shape: bool = True,
    wcs: WCS | None = None,
    flux_unit: u.UnitBase = u.ct,
    model_image: NDArray[np.floating] | None = None,
    child_footprints: Sequence[ChildFootprint | None] | None = None,
) -> Table:
    """Measure sources at given positions on a background-subtracted image.

    Parameters
    ----------
    image, variance : numpy.ndarray
        Background-subtracted image and its variance.
    x, y : array-like
        Initial (or, with ``fit_centroid=False``, fixed) positions in pixels.
    psf_sigma : float
        Gaussian PSF sigma in pixels (centroid weight, PSF flux model).
    mask : numpy.ndarray, optional
        Mask plane; BAD/SAT/CR/NO_DATA near the centre raise flags.
    aperture_radii : sequence of float
        Radii in pixels of the circular apertures.
    fit_centroid, fit_shape : bool
        Whether to re-centroid (forced photometry: False) and measure moments.
    wcs : astropy.wcs.WCS, optional
        Adds ``ra``/``dec`` from the measured centroid.
    flux_unit : astropy.units.UnitBase
        Unit of the image values (``u.ct`` for counts, ``u.nJy`` for coadds).
    model_image, child_footprints : optional
        Deblending: ``model_image`` is the sum of every deblended child's flux and
        ``child_footprints[i]`` the ``(ys, xs, values)`` pixels of source ``i``'s own
        deblended flux (or None); source ``i`` is then measured on
        ``image - model_image + child i`` (all detected neighbours removed, as LSST's
        NoiseReplacer does, but without inserting noise in their place).

    Returns
    -------
    astropy.table.Table
        Columns ``x``, ``y`` [pix], ``psf_flux``, ``psf_flux_err``,
        ``ap_flux_<r>``/``ap_flux_<r>_err`` per radius (r formatted like ``3_0``),
        ``ixx``, ``iyy``, ``ixy`` [pix2], ``snr`` (PSF flux S/N), and boolean flags
        ``flag_edge``, ``flag_bad``, ``flag_saturated``, ``flag_cr``,
        ``flag_centroid``, ``flag_shape``; ``ra``/``dec`` [deg] with a WCS.
    """
    xs_in = np.atleast_1d(np.asarray(x, dtype=float))
    ys_in = np.atleast_1d(np.asarray(y, dtype=float))
    half = int(math.ceil(max(max(aperture_radii, default=0.0), 4.0 * psf_sigma))) + 2
    n = len(xs_in)
    cols: dict[str, NDArray[np.float64] | NDArray[np.bool_]] = {
        name: np.full(n, np.nan)
        for name in ("x", "y", "psf_flux", "psf_flux_err", "ixx", "iyy", "ixy")
    }
    for r in aperture_radii:
        cols[f"ap_flux_{_rname(r)}"] = np.full(n, np.nan)
        cols[f"ap_flux_{_rname(r)}_err"] = np.full(n, np.nan)
    for flag in (
        "flag_edge",
        "flag_bad",
        "flag_saturated",
        "flag_cr",
        "flag_centroid",
        "flag_shape",
    ):
        cols[flag] = np.zeros(n, dtype=bool)
    base = np.asarray(image, dtype=float)
    if model_image is not None:
        base = base - np.nan_to_num(np.asarray(model_image, dtype=float))
    var_arr = np.asarray(variance, dtype=float)
    for i in range(n):
        st = _cut_stamp(base, var_arr, mask, xs_in[i], ys_in[i], half)
        child = child_footprints[i] if child_footprints is not None else None
        if child is not None:
            _add_child(st, child)
        _measure_one(
            st, i, xs_in[i], ys_in[i], psf_sigma, aperture_radii, fit_centroid, fit_shape, cols
        )
    return _to_table(cols, aperture_radii, flux_unit, wcs)


ChildFootprint = tuple[NDArray[np.integer], NDArray[np.integer], NDArray[np.floating]]
"""A deblended child's flux: ``(ys, xs, values)`` pixel arrays in the image frame."""


def _add_child(st: _Stamp, child: ChildFootprint) -> None:
    """Add a child's deblended flux to the stamp (pixels outside the stamp ignored)."""
    cy, cx, values = child
    x0, y0 = int(st.xs[0, 0]), int(st.ys[0, 0])
    size = st.image.shape[0]
    sx, sy = np.asarray(cx) - x0, np.asarray(cy) - y0
    inside = (sx >= 0) & (sx < size) & (sy >= 0) & (sy < size)
    np.add.at(st.image, (sy[inside], sx[inside]), np.asarray(values, dtype=float)[inside])


def _measure_one(
    st: _Stamp,
    i: int,
    x0: float,
    y0: float,
    psf_sigma: float,
    radii: Sequence[float],
    fit_centroid: bool,
    fit_shape: bool,
    cols: dict[str, NDArray[np.float64] | NDArray[np.bool_]],
) -> None:
    x, y = x0, y0
    if fit_centroid:
        x, y, ok = gaussian_centroid(st.image, st.xs, st.ys, x0, y0, psf_sigma)
        cols["flag_centroid"][i] = not ok
    cols["x"][i], cols["y"][i] = x, y
    core = (st.xs - x) ** 2 + (st.ys - y) ** 2 <= (2.0 * psf_sigma) ** 2
    core_mask = np.bitwise_or.reduce(st.mask[core]) if core.any() else 0
    cols["flag_edge"][i] = bool(core_mask & NO_DATA)
    cols["flag_bad"][i] = bool(core_mask & BAD)
    cols["flag_saturated"][i] = bool(core_mask & SAT)
    cols["flag_cr"][i] = bool(core_mask & CR)
    cols["psf_flux"][i], cols["psf_flux_err"][i] = _psf_flux(st, x, y, psf_sigma)
    good = np.isfinite(st.image) & np.isfinite(st.variance)
    img = np.where(good, st.image, 0.0)
    var = np.where(good, st.variance, 0.0)
    for r in radii:
        w = aperture_weights(st.xs, st.ys, x, y, r)
        if r + 0.5 < (st.xs.shape[1] - 1) / 2 and np.any((w > 0) & ~good):
            cols["flag_edge"][i] = True
        cols[f"ap_flux_{_rname(r)}"][i] = float((w * img).sum())
        cols[f"ap_flux_{_rname(r)}_err"][i] = math.sqrt(float((w**2 * var).sum()))
    if fit_shape:
        ixx, iyy, ixy, ok = adaptive_moments(st.image, st.xs, st.ys, x, y, psf_sigma)
        cols["ixx"][i], cols["iyy"][i], cols["ixy"][i] = ixx, iyy, ixy
        cols["flag_shape"][i] = not ok


def _rname(radius: float) -> str:
    """Column-name form of a radius: 3.0 -> '3_0'."""
    return f"{radius:.1f}".replace(".", "_")


def aperture_column(radius: float) -> str:
    """Return the flux column name of the aperture of ``radius`` pixels."""
    return f"ap_flux_{_rname(radius)}"


def _to_table(
    cols: dict[str, NDArray[np.float64] | NDArray[np.bool_]],
    radii: Sequence[float],
    flux_unit: u.UnitBase,
    wcs: WCS | None,
) -> Table:
    table = Table()
    table["x"] = cols["x"] * u.pix
    table["y"] = cols["y"] * u.pix
    if wcs is not None:
        from rc2_platform.tasks.algorithms.detection import add_sky_coords

        add_sky_coords(table, wcs)
    table["psf_flux"] = cols["psf_flux"] * flux_unit
    table["psf_flux_err"] = cols["psf_flux_err"] * flux_unit
    with np.errstate(divide="ignore", invalid="ignore"):
        table["snr"] = np.asarray(cols["psf_flux"]) / np.asarray(cols["psf_flux_err"])
    for r in radii:
        name = aperture_column(r)
        table[name] = cols[name] * flux_unit
        table[f"{name}_err"] = cols[f"{name}_err"] * flux_unit
    for name in ("ixx", "iyy", "ixy"):
        table[name] = cols[name] * u.pix**2
    for flag in (
        "flag_edge",
        "flag_bad",
        "flag_saturated",
        "flag_cr",
        "flag_centroid",
        "flag_shape",
    ):
        table[flag] = cols[flag]
    return table
