"""forcedPhotCoadd: forced photometry of the reference catalog on each band's coadd."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from rc2_platform.pipeline import Input, Output, PipelineTask, TaskConfig
from rc2_platform.tasks._common import EXPOSURE, NOT_YET, PATCH, PATCH_BAND, SOURCE_CATALOG


class ForcedPhotCoaddConfig(TaskConfig):
    """Configuration of :class:`ForcedPhotCoaddTask`."""

    aperture_radii_pixels: tuple[float, ...] = Field(
        (3.0, 4.5, 6.0, 9.0, 12.0), min_length=1, description="Circular aperture radii (pixels)."
    )
    do_psf_flux: bool = Field(True, description="Measure PSF fluxes at the reference positions.")


class ForcedPhotCoaddTask(PipelineTask[ForcedPhotCoaddConfig]):
    """Measure ``deepCoadd_ref`` positions on ``deepCoadd`` -> ``deepCoadd_forced_src``."""

    default_label = "forcedPhotCoadd"
    dimensions = PATCH_BAND
    ConfigClass = ForcedPhotCoaddConfig

    ref_cat = Input(
        dataset_type_name="deepCoadd_ref",
        dimensions=PATCH,
        storage_class=SOURCE_CATALOG,
        doc="Reference positions and shapes of all objects.",
    )
    exposure = Input(
        dataset_type_name="deepCoadd",
        dimensions=PATCH_BAND,
        storage_class=EXPOSURE,
        doc="The band's coadd.",
    )
    measurement = Output(
        dataset_type_name="deepCoadd_forced_src",
        dimensions=PATCH_BAND,
        storage_class=SOURCE_CATALOG,
        doc="Forced measurements.",
    )

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Return ``{"measurement": Table}`` (SCIENCE: issue 6)."""
        raise NotImplementedError(NOT_YET.format(type(self).__name__))
