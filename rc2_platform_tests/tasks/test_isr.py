"""Tests of instrument signature removal."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rc2_platform.tasks.algorithms import TaskDataError, run_isr, subtract_overscan
from rc2_platform.tasks.algorithms.mask_bits import BAD, SAT

GAIN = 2.0
READ_NOISE = 5.0
EXPTIME = 30.0
SHAPE = (60, 80)
OVERSCAN = 10


def _make_raw(seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sky = np.full(SHAPE, 1000.0)  # electrons of light
    sky[30, 40] = 60000.0  # one very bright pixel that saturates
    flat = 1.0 + 0.1 * np.sin(np.linspace(0, 3, SHAPE[1]))[None, :] * np.ones((SHAPE[0], 1))
    flat[5, 7] = 0.0
    bias = rng.normal(20.0, 2.0, SHAPE)  # electrons
    dark = np.full(SHAPE, 0.5)  # electrons per second
    light = sky * flat + dark * EXPTIME
    electrons = light + rng.normal(size=SHAPE) * np.sqrt(light) + bias
    rows = np.arange(SHAPE[0])[:, None]
    overscan_level = 500.0 + 0.5 * rows  # ADU, slope along rows
    noise = rng.normal(0.0, READ_NOISE / GAIN, (SHAPE[0], SHAPE[1] + OVERSCAN))
    raw = np.hstack([electrons / GAIN, np.zeros((SHAPE[0], OVERSCAN))]) + overscan_level + noise
    raw = np.minimum(raw, 30000.0)
    return {"raw": raw, "sky": sky, "flat": flat, "bias": bias, "dark": dark}


def test_overscan_fit_removes_row_slope() -> None:
    data = _make_raw()
    trimmed, level = subtract_overscan(data["raw"], OVERSCAN, order=1)
    assert trimmed.shape == SHAPE
    assert level == pytest.approx(500.0 + 0.5 * (SHAPE[0] - 1) / 2, abs=0.5)


def test_isr_recovers_sky_and_masks() -> None:
    data = _make_raw()
    result = run_isr(
        data["raw"],
        overscan_columns=OVERSCAN,
        gain=GAIN,
        read_noise=READ_NOISE,
        saturation=30000.0,
        exposure_time=EXPTIME,
        bias=data["bias"],
        dark=data["dark"],
        flat=data["flat"],
        bad_columns=[12],
    )
    good = result.mask == 0
    assert np.median(result.image[good]) == pytest.approx(1000.0, rel=0.005)
    residual = (result.image[good] - 1000.0) / np.sqrt(result.variance[good])
    assert 0.8 < np.std(residual) < 1.2  # the variance plane describes the noise
    assert result.mask[30, 40] & SAT
    assert np.all(result.mask[:, 12] & BAD)
    assert result.mask[5, 7] & BAD
    assert np.isfinite(result.image).all()
    # the bad column is interpolated from its neighbours: sky level, neighbour-like noise
    assert np.median(result.image[:, 12]) == pytest.approx(1000.0, abs=15.0)
    assert np.all(np.abs(result.image[:, 12] - 1000.0) < 150.0)


def test_dark_is_scaled_by_dark_time() -> None:
    data = _make_raw()
    common: dict[str, Any] = dict(
        overscan_columns=OVERSCAN, gain=GAIN, read_noise=READ_NOISE, saturation=1e9
    )
    unscaled = run_isr(data["raw"], exposure_time=EXPTIME, bias=data["bias"], **common)
    scaled = run_isr(
        data["raw"], exposure_time=EXPTIME, bias=data["bias"], dark=data["dark"], **common
    )
    diff = np.median(unscaled.image - scaled.image)
    assert diff == pytest.approx(0.5 * EXPTIME, rel=1e-6)


def test_all_nan_raw_is_a_clear_error() -> None:
    raw = np.full((20, 30), np.nan)
    with pytest.raises(TaskDataError, match="no finite pixel"):
        run_isr(
            raw, overscan_columns=5, gain=1.0, read_noise=1.0, saturation=1e5, exposure_time=1.0
        )


def test_calibration_of_wrong_shape_is_a_clear_error() -> None:
    raw = np.ones((20, 30))
    with pytest.raises(TaskDataError, match="master bias has shape"):
        run_isr(
            raw,
            overscan_columns=5,
            gain=1.0,
            read_noise=1.0,
            saturation=1e5,
            exposure_time=1.0,
            bias=np.zeros((20, 30)),
        )
