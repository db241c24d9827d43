"""Instrument signature removal for one amplifier-less detector image.

Raw layout (what :mod:`rc2_platform.simulate` writes and :func:`run_isr` expects):
a 2-d ADU array whose last ``overscan_columns`` columns, on the right, are a serial
overscan strip (bias level + read noise, no light); the rest is the imaging area.

Steps, in the order of LSST's ``IsrTask``: saturation mask (raw ADU), overscan
subtraction (per-row median, fitted by a polynomial along the columns), trim,
gain (ADU -> electrons), master bias subtraction (electrons), dark subtraction
scaled by dark time, flat division, variance ``(max(signal, 0) + read_noise^2) /
flat^2`` from the pre-flat image, bad pixels (list, columns, and the flat's
zero/NaN/negative pixels) masked BAD and interpolated along rows.

Not done (LSST does them): multiple amplifiers and assembly, crosstalk,
linearity, brighter-fatter, fringe, defect files in camera geometry, vignetting,
saturation-trail interpolation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from rc2_platform.tasks.algorithms.errors import TaskDataError
from rc2_platform.tasks.algorithms.mask_bits import BAD, INTRP, SAT


@dataclass
class IsrResult:
    """Output of :func:`run_isr` (the ``postISRCCD`` planes).

    Attributes
    ----------
    image : numpy.ndarray
        Calibrated image in electrons (flat-fielded), float32.
    variance : numpy.ndarray
        Variance in electrons^2, float32.
    mask : numpy.ndarray
        ``int32`` mask with SAT, BAD and INTRP set.
    overscan_level : float
        Mean overscan level subtracted, ADU.
    """

    image: NDArray[np.float32]
    variance: NDArray[np.float32]
    mask: NDArray[np.int32]
    overscan_level: float


def subtract_overscan(
    raw: NDArray[np.floating], overscan_columns: int, *, order: int = 1
) -> tuple[NDArray[np.float64], float]:
    """Subtract the serial overscan and trim it off.

    The per-row median of the overscan strip is fitted with a polynomial of ``order``
    in the row index (order 0 = one constant), and the fit is subtracted row by row.

    Parameters
    ----------
    raw : numpy.ndarray
        Raw image in ADU, overscan in the last ``overscan_columns`` columns.
    overscan_columns : int
        Width of the overscan strip (0: no overscan, nothing subtracted).
    order : int
        Polynomial order of the fit along rows.

    Returns
    -------
    trimmed : numpy.ndarray
        The imaging area, overscan-subtracted, float64.
    level : float
        Mean subtracted level in ADU.

    Raises
    ------
    TaskDataError
        If the strip is wider than the image or contains no finite value.
    """
    data: NDArray[np.float64] = np.asarray(raw, dtype=np.float64)
    if overscan_columns <= 0:
        return data.copy(), 0.0
    if overscan_columns >= raw.shape[1]:
        raise TaskDataError(
            f"overscan of {overscan_columns} columns leaves no imaging area in a raw of shape {data.shape}"
        )
    strip = data[:, -overscan_columns:]
    with np.errstate(all="ignore"):
        rows = np.nanmedian(strip, axis=1) if np.isfinite(strip).any() else None
    if rows is None:
        raise TaskDataError("the overscan strip has no finite value; the raw file is corrupt")
    good = np.isfinite(rows)
    index = np.arange(data.shape[0], dtype=float)
    coeffs = np.polyfit(index[good], rows[good], deg=min(order, max(int(good.sum()) - 1, 0)))
    fit = np.polyval(coeffs, index)
    return data[:, :-overscan_columns] - fit[:, None], float(fit.mean())


def _interpolate_rows(image: NDArray[np.float64], bad: NDArray[np.bool_]) -> None:
    """Linearly interpolate ``bad`` pixels along each row, in place."""
    cols = np.arange(image.shape[1])
    for row in np.nonzero(bad.any(axis=1))[0]:
        good = ~bad[row] & np.isfinite(image[row])
        if good.sum() >= 2:
            image[row, bad[row]] = np.interp(cols[bad[row]], cols[good], image[row, good])
        else:
            image[row, bad[row]] = 0.0


def run_isr(
    raw: NDArray[np.floating],
    *,
    overscan_columns: int,
    gain: float,
    read_noise: float,
    saturation: float,
    exposure_time: float,
    dark_time: float | None = None,
    bias: NDArray[np.floating] | None = None,
    dark: NDArray[np.floating] | None = None,
    dark_exposure_time: float = 1.0,
    flat: NDArray[np.floating] | None = None,
    bad_columns: Sequence[int] = (),
    bad_pixels: NDArray[np.bool_] | None = None,
    overscan_order: int = 1,
) -> IsrResult:
    """Run instrument signature removal on one raw detector image.

    Parameters
    ----------
    raw : numpy.ndarray
        Raw image in ADU including the overscan strip.
    overscan_columns : int
        Width of the overscan strip on the right.
    gain : float
        Electrons per ADU.
    read_noise : float
        Read noise in electrons.
    saturation : float
        Saturation level in raw ADU; pixels at or above it are masked SAT.
    exposure_time : float
        Exposure time of the raw in seconds (used as dark time if ``dark_time`` is None).
    dark_time : float, optional
        Dark time of the raw in seconds.
    bias : numpy.ndarray, optional
        Master bias in electrons, trimmed shape.
    dark : numpy.ndarray, optional
        Master dark in electrons per ``dark_exposure_time`` seconds, trimmed shape.
    dark_exposure_time : float
        Dark time the master dark is normalised to (LSST normalises to 1 s).
    flat : numpy.ndarray, optional
        Master flat (mean ~1), trimmed shape; non-positive or NaN pixels become BAD.
    bad_columns : sequence of int
        Known bad columns of the imaging area.
    bad_pixels : numpy.ndarray, optional
        Boolean bad-pixel map of the imaging area.
    overscan_order : int
        Polynomial order of the overscan fit.

    Returns
    -------
    IsrResult

    Raises
    ------
    TaskDataError
        If the imaging area has no finite pixel, or a calibration's shape differs.
    """
    if gain <= 0:
        raise TaskDataError(f"gain must be positive, got {gain}")
    raw = np.asarray(raw, dtype=float)
    trimmed_raw = raw[:, : raw.shape[1] - max(overscan_columns, 0)]
    if not np.isfinite(trimmed_raw).any():
        raise TaskDataError(
            f"raw image of shape {raw.shape} has no finite pixel; the file is corrupt"
        )
    mask = np.zeros(trimmed_raw.shape, dtype=np.int32)
    mask[trimmed_raw >= saturation] |= SAT
    image, level = subtract_overscan(raw, overscan_columns, order=overscan_order)
    image *= gain
    for name, calib in (("bias", bias), ("dark", dark), ("flat", flat)):
        if calib is not None and np.shape(calib) != image.shape:
            raise TaskDataError(
                f"master {name} has shape {np.shape(calib)} but the trimmed raw is {image.shape}; "
                "check that the calibration belongs to this detector"
            )
    if bias is not None:
        image -= np.asarray(bias, dtype=float)
    if dark is not None:
        scale = (exposure_time if dark_time is None else dark_time) / dark_exposure_time
        image -= scale * np.asarray(dark, dtype=float)
    bad = ~np.isfinite(image)
    if bad_pixels is not None:
        bad |= np.asarray(bad_pixels, dtype=bool)
    for col in bad_columns:
        if 0 <= col < image.shape[1]:
            bad[:, col] = True
    variance = np.clip(np.nan_to_num(image), 0.0, None) + read_noise**2
    if flat is not None:
        flat_arr = np.asarray(flat, dtype=float)
        flat_bad = ~np.isfinite(flat_arr) | (flat_arr <= 0)
        bad |= flat_bad
        safe = np.where(flat_bad, 1.0, flat_arr)
        image /= safe
        variance /= safe**2
    mask[bad] |= BAD | INTRP
    _interpolate_rows(image, bad)
    variance[bad] = np.nanmax(variance) if np.isfinite(variance).any() else read_noise**2
    return IsrResult(image.astype(np.float32), variance.astype(np.float32), mask, level)
