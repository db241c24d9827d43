"""deblend: split the merged footprints of one patch into children, per band."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from rc2_platform.pipeline import Input, Output, PipelineTask, TaskConfig
from rc2_platform.tasks._common import EXPOSURE, NOT_YET, PATCH, PATCH_BAND, SOURCE_CATALOG


class DeblendCoaddSourcesConfig(TaskConfig):
    """Configuration of :class:`DeblendCoaddSourcesTask`."""

    max_footprint_area: int = Field(
        1_000_000, ge=1, description="Footprints larger than this (pixels) are not deblended."
    )
    max_number_of_peaks: int = Field(
        0, ge=0, description="Deblend at most this many peaks per footprint (0: no limit)."
    )
    propagate_all_peaks: bool = Field(
        False, description="Keep peaks that the deblender could not model as children."
    )


class DeblendCoaddSourcesTask(PipelineTask[DeblendCoaddSourcesConfig]):
    """Deblend ``deepCoadd_mergeDet`` on one band's coadd -> ``deepCoadd_deblendedFlux``."""

    default_label = "deblend"
    dimensions = PATCH_BAND
    ConfigClass = DeblendCoaddSourcesConfig

    peaks = Input(
        dataset_type_name="deepCoadd_mergeDet",
        dimensions=PATCH,
        storage_class=SOURCE_CATALOG,
        doc="Merged detections of all bands.",
    )
    coadd = Input(
        dataset_type_name="deepCoadd",
        dimensions=PATCH_BAND,
        storage_class=EXPOSURE,
        doc="The band's coadd.",
    )
    deblended_flux = Output(
        dataset_type_name="deepCoadd_deblendedFlux",
        dimensions=PATCH_BAND,
        storage_class=SOURCE_CATALOG,
        doc="Parents and deblended children with their footprints.",
    )

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Return ``{"deblended_flux": Table}`` (SCIENCE: issue 6)."""
        raise NotImplementedError(NOT_YET.format(type(self).__name__))
