"""detection: detect sources on one band's coadd of one patch."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from rc2_platform.pipeline import Input, Output, PipelineTask, TaskConfig
from rc2_platform.tasks._common import EXPOSURE, NOT_YET, PATCH_BAND, SOURCE_CATALOG


class DetectCoaddSourcesConfig(TaskConfig):
    """Configuration of :class:`DetectCoaddSourcesTask`."""

    detection_threshold_sigma: float = Field(5.0, gt=0, description="Threshold (sigma).")
    do_scale_variance: bool = Field(
        True, description="Rescale the coadd variance to match the measured pixel noise."
    )
    min_footprint_pixels: int = Field(5, ge=1, description="Smallest footprint kept (pixels).")


class DetectCoaddSourcesTask(PipelineTask[DetectCoaddSourcesConfig]):
    """Detect footprints and peaks on ``deepCoadd`` -> ``deepCoadd_det``."""

    default_label = "detection"
    dimensions = PATCH_BAND
    ConfigClass = DetectCoaddSourcesConfig

    exposure = Input(
        dataset_type_name="deepCoadd",
        dimensions=PATCH_BAND,
        storage_class=EXPOSURE,
        doc="The coadd to search.",
    )
    output_sources = Output(
        dataset_type_name="deepCoadd_det",
        dimensions=PATCH_BAND,
        storage_class=SOURCE_CATALOG,
        doc="Detected footprints and peaks.",
    )

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Return ``{"output_sources": Table}`` (SCIENCE: issue 6)."""
        raise NotImplementedError(NOT_YET.format(type(self).__name__))
