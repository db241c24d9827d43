"""Single-frame characterization: background, detection, PSF size, cosmic rays.

Compared with LSST's ``CharacterizeImageTask``: the background is a mesh median
(:mod:`.background`), the PSF is reduced to one number (the FWHM of a circular
Gaussian from the adaptive second moments of bright, unsaturated, isolated stars;
LSST fits a spatially varying PSFEx/Piff model), there is no aperture correction,
and cosmic rays are found with the PSF-sharpness test of ``findCosmicRays`` (a pixel
sharper than the PSF in some direction) and repaired by averaging the good
neighbours instead of PSF-aware interpolation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import NDArray
from scipy import ndimage

from rc2_platform.tasks.algorithms._psf import FWHM_PER_SIGMA
from rc2_platform.tasks.algorithms.background import estimate_background
from rc2_platform.tasks.algorithms.detection import detect_sources
from rc2_platform.tasks.algorithms.errors import TaskDataError
from rc2_platform.tasks.algorithms.mask_bits import BAD, CR, DETECTED, INTRP, NO_DATA, SAT
from rc2_platform.tasks.algorithms.measurement import measure_sources


@dataclass
class CharacterizeResult:
    """Output of :func:`characterize_image`.

    Attributes
    ----------
    image, variance, mask : numpy.ndarray
        Background-subtracted, cosmic-ray-repaired image, its variance and mask
        (CR, INTRP and DETECTED set).
    background : numpy.ndarray
        The subtracted background model.
    sources : astropy.table.Table
        Detected sources measured with :func:`.measure_sources`, plus ``id`` and
        ``psf_candidate`` (used for the PSF estimate).
    psf_fwhm : float
        PSF FWHM in pixels.
    n_cosmic_rays : int
        Number of pixels masked as cosmic rays.
    """

    image: NDArray[np.float64]
    variance: NDArray[np.float64]
    mask: NDArray[np.int32]
    background: NDArray[np.float64]
    sources: Table
    psf_fwhm: float
    n_cosmic_rays: int

    @property
    def psf_sigma(self) -> float:
        """Gaussian sigma of the PSF in pixels."""
        return self.psf_fwhm / FWHM_PER_SIGMA


def check_pixels(
    image: NDArray[np.floating],
    mask: NDArray[np.integer] | None,
    *,
    max_saturated_fraction: float = 0.5,
) -> None:
    """Raise :class:`TaskDataError` for images that cannot be characterized.

    Raises
    ------
    TaskDataError
        If the image has no finite pixel, or more than ``max_saturated_fraction`` of
        its pixels are SAT, or every pixel is masked BAD/NO_DATA.
    """
    finite = np.isfinite(image)
    if not finite.any():
        raise TaskDataError(
            f"image of shape {image.shape} has no finite pixel (all NaN/inf); check the raw file"
        )
    if mask is not None:
        sat_fraction = float(np.mean((mask & SAT) != 0))
        if sat_fraction > max_saturated_fraction:
            raise TaskDataError(
                f"{sat_fraction:.0%} of the pixels are saturated (limit {max_saturated_fraction:.0%}); "
                "the frame is unusable, check the exposure time / shutter"
            )
        if not ((mask & (BAD | NO_DATA)) == 0)[finite].any():
            raise TaskDataError(
                "every finite pixel is masked BAD or NO_DATA; check the bad-pixel mask"
            )


def estimate_psf_fwhm(
    sources: Table, *, min_snr: float = 20.0, min_stars: int = 3
) -> tuple[float, NDArray[np.bool_]]:
    """Estimate the PSF FWHM (pixels) from measured sources.

    Candidates are unflagged sources with PSF S/N above ``min_snr`` and a size
    ``T = (ixx + iyy) / 2`` above 0.3 px^2 (cosmic rays are sharper); the stellar
    locus is found by iterative 2.5-sigma (MAD) clipping of ``sqrt(T)`` around the
    median, then the FWHM is ``2.3548 sqrt(median T - 1/12)`` (pixelization removed).

    Returns
    -------
    fwhm : float
        FWHM in pixels.
    used : numpy.ndarray
        Boolean per source: used for the estimate.

    Raises
    ------
    TaskDataError
        If fewer than ``min_stars`` stars are usable.
    """
    flags = np.zeros(len(sources), dtype=bool)
    for name in (
        "flag_edge",
        "flag_bad",
        "flag_saturated",
        "flag_cr",
        "flag_centroid",
        "flag_shape",
    ):
        flags |= np.asarray(sources[name], dtype=bool)
    size = 0.5 * (np.asarray(sources["ixx"], dtype=float) + np.asarray(sources["iyy"], dtype=float))
    snr = np.asarray(sources["snr"], dtype=float)
    cand = ~flags & (snr > min_snr) & np.isfinite(size) & (size > 0.3)
    radius = np.sqrt(np.where(cand, size, np.nan))
    used = cand.copy()
    for _ in range(5):
        if used.sum() < min_stars:
            break
        med = float(np.median(radius[used]))
        mad = 1.4826 * float(np.median(np.abs(radius[used] - med)))
        new = cand & (np.abs(radius - med) <= max(2.5 * mad, 0.02 * med))
        if np.array_equal(new, used):
            break
        used = new
    if used.sum() < min_stars:
        raise TaskDataError(
            f"no stars to measure the PSF: {int(used.sum())} usable stars with S/N > {min_snr:g}, "
            f"need at least {min_stars}; the detector may be empty, masked or out of focus"
        )
    t_med = float(np.median(size[used]))
    return FWHM_PER_SIGMA * math.sqrt(max(t_med - 1.0 / 12.0, 1e-3)), used


def find_cosmic_rays(
    image: NDArray[np.floating],
    variance: NDArray[np.floating],
    mask: NDArray[np.integer] | None,
    *,
    psf_sigma: float,
    nsigma: float = 6.0,
    cond_factor: float = 2.5,
) -> NDArray[np.bool_]:
    """Return a boolean map of cosmic-ray pixels on a background-subtracted image.

    A pixel is a cosmic ray if it is above ``nsigma`` and, in at least one of the
    four directions (horizontal, vertical, two diagonals), it is sharper than the
    PSF allows: ``(I - c s) g(d) > mean(I[+d], I[-d]) + c s`` with ``g(d)`` the
    Gaussian PSF's value at distance ``d`` relative to its peak, ``s`` the pixel's
    noise and ``c = cond_factor``. No star can pass this (its neighbours are at
    least ``g(d)`` of its peak); neighbours above 2 sigma are added to the mask.
    SAT/BAD/NO_DATA pixels are never cosmic rays.
    """
    img = np.nan_to_num(np.asarray(image, dtype=float))
    sig = np.sqrt(np.clip(np.nan_to_num(np.asarray(variance, dtype=float)), 0, None))
    cand = img > nsigma * sig
    if mask is not None:
        cand &= (mask & (SAT | BAD | NO_DATA)) == 0
    sharp = np.zeros_like(cand)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        g = math.exp(-(dx * dx + dy * dy) / (2.0 * psf_sigma**2))
        plus = np.roll(img, (-dy, -dx), axis=(0, 1))
        minus = np.roll(img, (dy, dx), axis=(0, 1))
        sharp |= (img - cond_factor * sig) * g > 0.5 * (plus + minus) + cond_factor * sig
    crs = cand & sharp
    crs[0, :] = crs[-1, :] = crs[:, 0] = crs[:, -1] = False
    if crs.any():
        grown = ndimage.binary_dilation(crs, structure=np.ones((3, 3), dtype=bool))
        crs |= grown & (img > 2.0 * sig)
    return np.asarray(crs)


def repair_pixels(image: NDArray[np.float64], bad: NDArray[np.bool_], size: int = 5) -> None:
    """Replace ``bad`` pixels in place by the mean of the good pixels in a ``size`` box."""
    good = (~bad & np.isfinite(image)).astype(float)
    num = ndimage.uniform_filter(np.where(good > 0, image, 0.0), size=size, mode="nearest")
    den = ndimage.uniform_filter(good, size=size, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        fill = np.where(den > 0, num / den, 0.0)
    image[bad] = fill[bad]


def characterize_image(
    image: NDArray[np.floating],
    variance: NDArray[np.floating],
    mask: NDArray[np.integer] | None = None,
    *,
    psf_fwhm_guess: float = 4.0,
    detection_threshold: float = 5.0,
    psf_min_snr: float = 20.0,
    mesh_size: int = 64,
    wcs: WCS | None = None,
    max_saturated_fraction: float = 0.5,
) -> CharacterizeResult:
    """Subtract the background, repair cosmic rays, detect and measure sources, size the PSF.

    Steps: check the pixels; background (mesh median) and subtraction; a first
    10-sigma detection and measurement with the guessed PSF to estimate the FWHM;
    cosmic-ray finding with that PSF and repair; background re-estimated with the
    detections masked; final detection at ``detection_threshold`` sigma,
    measurement and PSF estimate.

    Parameters
    ----------
    image, variance : numpy.ndarray
        Post-ISR image (electrons) and variance.
    mask : numpy.ndarray, optional
        Post-ISR mask (not modified; the result carries a new mask).
    psf_fwhm_guess : float
        Initial PSF FWHM in pixels.
    detection_threshold : float
        Final detection threshold in sigmas.
    psf_min_snr : float
        Minimum PSF S/N of PSF stars.
    mesh_size : int
        Background mesh size in pixels.
    wcs : astropy.wcs.WCS, optional
        Initial WCS; adds ``ra``/``dec`` to the sources.
    max_saturated_fraction : float
        See :func:`check_pixels`.

    Returns
    -------
    CharacterizeResult

    Raises
    ------
    TaskDataError
        All-NaN or saturated image, or no stars for the PSF.
    """
    check_pixels(image, mask, max_saturated_fraction=max_saturated_fraction)
    out_mask = np.zeros(image.shape, np.int32) if mask is None else mask.astype(np.int32).copy()
    out_mask[~np.isfinite(image)] |= BAD
    raw = np.where(np.isfinite(image), image, np.nan).astype(float)
    var = np.where(np.isfinite(variance), variance, np.inf).astype(float)
    bkg = estimate_background(raw, out_mask, mesh_size=mesh_size)
    sub = raw - bkg
    det_mask = out_mask.copy()
    first = detect_sources(
        sub, var, psf_sigma=psf_fwhm_guess / FWHM_PER_SIGMA, threshold=10.0, mask=det_mask
    )
    meas = measure_sources(  # sizes for the PSF estimate: no aperture fluxes needed
        sub,
        var,
        first.peaks["x"],
        first.peaks["y"],
        psf_sigma=psf_fwhm_guess / FWHM_PER_SIGMA,
        mask=out_mask,
        aperture_radii=(),
    )
    fwhm, _ = estimate_psf_fwhm(meas, min_snr=psf_min_snr)
    crs = find_cosmic_rays(sub, var, out_mask, psf_sigma=fwhm / FWHM_PER_SIGMA)
    out_mask[crs] |= CR | INTRP
    repair_pixels(raw, crs | ~np.isfinite(raw))
    bkg = estimate_background(raw, out_mask | (det_mask & DETECTED), mesh_size=mesh_size)
    sub = raw - bkg
    psf_sigma = fwhm / FWHM_PER_SIGMA
    final = detect_sources(
        sub, var, psf_sigma=psf_sigma, threshold=detection_threshold, mask=out_mask
    )
    sources = measure_sources(
        sub, var, final.peaks["x"], final.peaks["y"], psf_sigma=psf_sigma, mask=out_mask, wcs=wcs
    )
    sources.add_column(np.arange(1, len(sources) + 1, dtype=np.int64), name="id", index=0)
    sources["footprint_id"] = final.peaks["footprint_id"]
    fwhm, used = estimate_psf_fwhm(sources, min_snr=psf_min_snr)
    sources["psf_candidate"] = used
    sources.meta["PSF_FWHM"] = fwhm
    sources["x"].unit = u.pix
    return CharacterizeResult(
        image=sub,
        variance=var,
        mask=out_mask,
        background=bkg,
        sources=sources,
        psf_fwhm=fwhm,
        n_cosmic_rays=int(crs.sum()),
    )
