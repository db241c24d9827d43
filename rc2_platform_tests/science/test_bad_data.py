"""Bad pixel data gives TaskDataError with a clear message, not a crash."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from rc2_platform.core.exposure import Exposure
from rc2_platform.errors import Rc2Error
from rc2_platform.tasks.algorithms import TaskDataError
from rc2_platform.tasks.calibrate import CalibrateTask
from rc2_platform.tasks.characterize_image import CharacterizeImageTask
from rc2_platform.tasks.isr import IsrTask
from rc2_platform_tests.science.conftest import DETECTORS, VISITS
from rc2_platform_tests.science.tiny_files import TinyFiles


def _inputs(tiny: TinyFiles) -> dict:
    return tiny.isr_inputs(VISITS[0], DETECTORS[0])


def test_all_nan_raw_fails_in_isr(tiny: TinyFiles) -> None:
    inputs = _inputs(tiny)
    raw = inputs["ccd_exposure"]
    inputs["ccd_exposure"] = Exposure(
        np.full(raw.shape, np.nan, np.float32), header=raw.header, wcs=raw.wcs
    )
    with pytest.raises(TaskDataError, match="no finite pixel"):
        IsrTask().run(**inputs)
    assert issubclass(TaskDataError, Rc2Error)


def test_saturated_frame_fails_in_characterize(tiny: TinyFiles) -> None:
    inputs = _inputs(tiny)
    raw = inputs["ccd_exposure"]
    saturated = np.full(raw.shape, float(raw.header["SATURATE"]), np.float32)
    inputs["ccd_exposure"] = Exposure(saturated, header=raw.header, wcs=raw.wcs)
    post = IsrTask().run(**inputs)["output_exposure"]
    with pytest.raises(TaskDataError, match="saturated"):
        CharacterizeImageTask().run(exposure=post)


def test_detector_with_no_stars_fails_in_characterize(frames: dict) -> None:
    post = frames[(VISITS[0], DETECTORS[0])]["postISRCCD"]
    rng = np.random.default_rng(3)
    level = float(np.median(post.image))
    empty = (level + rng.normal(0.0, np.sqrt(level), post.shape)).astype(np.float32)
    blank = Exposure(
        empty,
        np.zeros(post.shape, np.int32),
        np.full(post.shape, level, np.float32),
        post.header,
        post.wcs,
    )
    with pytest.raises(TaskDataError, match="stars"):
        CharacterizeImageTask().run(exposure=blank)


def test_calibrate_without_reference_stars_is_unable_to_match(frames: dict) -> None:
    out = frames[(VISITS[0], DETECTORS[0])]
    empty = Table({"ra": np.zeros(0), "dec": np.zeros(0), "i_mag": np.zeros(0)})
    with pytest.raises(TaskDataError, match="Unable to match sources"):
        CalibrateTask().run(
            exposure=out["icExp"], ic_source_cat=out["icSrc"], ref_cat=[lambda: empty]
        )
