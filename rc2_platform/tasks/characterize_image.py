"""characterizeImage: background, PSF and bright-source detection on one detector."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from rc2_platform.pipeline import Input, Output, PipelineTask, TaskConfig
from rc2_platform.tasks._common import (
    EXPOSURE,
    EXPOSURE_DETECTOR,
    NOT_YET,
    SOURCE_CATALOG,
    VISIT_DETECTOR,
)


class CharacterizeImageConfig(TaskConfig):
    """Configuration of :class:`CharacterizeImageTask`."""

    detection_threshold_sigma: float = Field(
        5.0, gt=0, description="Detection threshold in units of the background noise."
    )
    psf_fwhm_guess_pixels: float = Field(
        4.0, gt=0, description="Initial PSF FWHM guess (pixels) used before the PSF is measured."
    )
    psf_iterations: int = Field(2, ge=1, le=10, description="Detect/measure-PSF iterations.")
    min_psf_stars: int = Field(5, ge=1, description="Fewest stars needed to fit a PSF model.")
    background_bin_size: int = Field(128, ge=8, description="Background mesh size (pixels).")


class CharacterizeImageTask(PipelineTask[CharacterizeImageConfig]):
    """Estimate background and PSF of a ``postISRCCD`` and detect bright sources."""

    default_label = "characterizeImage"
    dimensions = VISIT_DETECTOR
    ConfigClass = CharacterizeImageConfig

    exposure = Input(
        dataset_type_name="postISRCCD",
        dimensions=EXPOSURE_DETECTOR,
        storage_class=EXPOSURE,
        doc="The ISR-corrected image of the visit's exposure.",
    )
    characterized = Output(
        dataset_type_name="icExp",
        dimensions=VISIT_DETECTOR,
        storage_class=EXPOSURE,
        doc="Background-subtracted image with its PSF.",
    )
    source_cat = Output(
        dataset_type_name="icSrc",
        dimensions=VISIT_DETECTOR,
        storage_class=SOURCE_CATALOG,
        doc="Bright sources used to measure the PSF.",
    )

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Return ``{"characterized": ..., "source_cat": ...}`` (SCIENCE: issue 6)."""
        raise NotImplementedError(NOT_YET.format(type(self).__name__))
