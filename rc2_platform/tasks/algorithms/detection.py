"""Source detection: matched-filter thresholding, connected footprints and peaks.

Compared with LSST's ``SourceDetectionTask``: the same idea (smooth with the PSF,
threshold the smoothed image in units of its own noise, connected pixels form
footprints, local maxima are peaks, footprints are grown by a fraction of the PSF),
but with a single Gaussian PSF, no temporary local background and no footprint
merging across thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import astropy.units as u  # noqa: I001  (kept last: only used for table units)
import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import NDArray
from scipy import ndimage

from rc2_platform.tasks.algorithms._psf import FWHM_PER_SIGMA, gaussian_kernel
from rc2_platform.tasks.algorithms.mask_bits import BAD, DETECTED, NO_DATA


@dataclass
class DetectionResult:
    """Footprints and peaks found on an image.

    Attributes
    ----------
    labels : numpy.ndarray
        ``int32`` label image: 0 outside footprints, footprint id (1..N) inside.
    peaks : astropy.table.Table
        One row per peak: ``peak_id``, ``footprint_id``, ``x``, ``y`` (integer peak
        pixel, as float), ``peak_value`` (smoothed image), ``significance`` (smoothed
        value over its noise), ``n_pixels`` (footprint size) and, if a WCS was
        given, ``ra``/``dec`` in degrees. Sorted by footprint then decreasing value.
    """

    labels: NDArray[np.int32]
    peaks: Table

    @property
    def n_footprints(self) -> int:
        """Number of footprints."""
        return int(self.labels.max()) if self.labels.size else 0


def smooth_and_significance(
    image: NDArray[np.floating],
    variance: NDArray[np.floating],
    psf_sigma: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Convolve with the PSF and return the smoothed image and its significance map.

    The noise of the smoothed image is ``sqrt(variance convolved with kernel**2)``,
    exact for uncorrelated pixel noise. Non-finite pixels count as zero signal with
    infinite variance (zero significance).
    """
    kernel = gaussian_kernel(psf_sigma)
    finite = np.isfinite(image) & np.isfinite(variance) & (variance > 0)
    img = np.where(finite, image, 0.0).astype(float)
    var = np.where(finite, variance, 0.0).astype(float)
    # The pixel-integrated Gaussian kernel is the outer product of its 1-d profile, so the
    # convolution runs as two 1-d passes (zero outside the image, like fftconvolve "same").
    profile = kernel.sum(axis=0) / np.sqrt(kernel.sum())
    smoothed = _separable(img, profile)
    noise_var = _separable(var, profile**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        sig = np.where(noise_var > 0, smoothed / np.sqrt(np.abs(noise_var)), 0.0)
    return smoothed, np.asarray(sig)


def _separable(image: NDArray[np.float64], profile: NDArray[np.float64]) -> NDArray[np.float64]:
    """Convolve with ``outer(profile, profile)`` (symmetric), zero outside the image."""
    rows = ndimage.correlate1d(image, profile, axis=0, mode="constant", cval=0.0)
    return np.asarray(ndimage.correlate1d(rows, profile, axis=1, mode="constant", cval=0.0))


def detect_sources(
    image: NDArray[np.floating],
    variance: NDArray[np.floating],
    *,
    psf_sigma: float,
    threshold: float = 5.0,
    mask: NDArray[np.integer] | None = None,
    min_pixels: int = 5,
    grow_fwhm: float = 1.0,
    wcs: WCS | None = None,
    set_mask: bool = True,
) -> DetectionResult:
    """Detect sources on a background-subtracted image.

    Parameters
    ----------
    image, variance : numpy.ndarray
        Background-subtracted image and its variance (same units squared).
    psf_sigma : float
        Gaussian PSF sigma in pixels, used as the matched filter.
    threshold : float
        Detection threshold in sigmas of the smoothed image.
    mask : numpy.ndarray, optional
        Pixels with BAD or NO_DATA never start a detection; if ``set_mask`` the
        DETECTED bit is set in this array in place over the grown footprints.
    min_pixels : int
        Footprints with fewer pixels above threshold are dropped.
    grow_fwhm : float
        Footprints are dilated by ``grow_fwhm`` x FWHM pixels (touching grown
        footprints are merged into one, as in LSST).
    wcs : astropy.wcs.WCS, optional
        If given, peaks get ``ra``/``dec`` columns.
    set_mask : bool
        Whether to set DETECTED in ``mask``.

    Returns
    -------
    DetectionResult
    """
    smoothed, sig = smooth_and_significance(image, variance, psf_sigma)
    above = sig > threshold
    if mask is not None:
        above &= (mask & (BAD | NO_DATA)) == 0
    seeds, n_seeds = ndimage.label(above)
    if n_seeds:
        sizes = ndimage.sum_labels(np.ones_like(seeds), seeds, index=np.arange(1, n_seeds + 1))
        keep = np.zeros(n_seeds + 1, dtype=bool)
        keep[1:] = sizes >= min_pixels
        above = keep[seeds]
    grow = int(round(grow_fwhm * FWHM_PER_SIGMA * psf_sigma))
    footprint_mask = above
    if grow > 0 and above.any():
        disk = _disk(grow)
        footprint_mask = ndimage.binary_dilation(above, structure=disk)
    labels, _ = ndimage.label(footprint_mask)
    labels = labels.astype(np.int32)
    if mask is not None and set_mask:
        mask |= np.where(footprint_mask, DETECTED, 0).astype(mask.dtype)
    peaks = _find_peaks(smoothed, sig, labels, above, wcs)
    return DetectionResult(labels=labels, peaks=peaks)


def _disk(radius: int) -> NDArray[np.bool_]:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return np.asarray(xx**2 + yy**2 <= radius**2)


def _find_peaks(
    smoothed: NDArray[np.float64],
    sig: NDArray[np.float64],
    labels: NDArray[np.int32],
    above: NDArray[np.bool_],
    wcs: WCS | None,
) -> Table:
    """Local maxima (3x3) of the smoothed image that are above threshold."""
    local_max = smoothed == ndimage.maximum_filter(smoothed, size=3, mode="nearest")
    ys, xs = np.nonzero(local_max & above & (labels > 0))
    fp = labels[ys, xs]
    values = smoothed[ys, xs]
    order = np.lexsort((-values, fp))
    ys, xs, fp, values = ys[order], xs[order], fp[order], values[order]
    n_pix = np.bincount(labels.ravel(), minlength=int(labels.max()) + 1)
    table = Table()
    table["peak_id"] = np.arange(1, len(xs) + 1, dtype=np.int64)
    table["footprint_id"] = fp.astype(np.int64)
    table["x"] = xs.astype(float) * u.pix
    table["y"] = ys.astype(float) * u.pix
    table["peak_value"] = values
    table["significance"] = sig[ys, xs]
    table["n_pixels"] = n_pix[fp].astype(np.int64)
    if wcs is not None:
        add_sky_coords(table, wcs)
    return table


def add_sky_coords(table: Table, wcs: WCS, x_col: str = "x", y_col: str = "y") -> None:
    """Add ``ra``/``dec`` (degrees) columns computed from pixel columns with ``wcs``."""
    x = np.asarray(table[x_col], dtype=float)
    y = np.asarray(table[y_col], dtype=float)
    if len(x):
        ra, dec = wcs.pixel_to_world_values(x, y)
    else:
        ra, dec = np.zeros(0), np.zeros(0)
    table["ra"] = np.asarray(ra, dtype=float) * u.deg
    table["dec"] = np.asarray(dec, dtype=float) * u.deg
