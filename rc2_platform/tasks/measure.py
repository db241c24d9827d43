"""measure: measure deblended sources on one band's coadd."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from rc2_platform.pipeline import (
    BaseConnection,
    Input,
    Output,
    PipelineTask,
    PrerequisiteInput,
    TaskConfig,
)
from rc2_platform.tasks._common import (
    EXPOSURE,
    NOT_YET,
    OBJECT_MASK,
    PATCH,
    PATCH_BAND,
    SOURCE_CATALOG,
)


class MeasureMergedCoaddSourcesConfig(TaskConfig):
    """Configuration of :class:`MeasureMergedCoaddSourcesTask`."""

    aperture_radii_pixels: tuple[float, ...] = Field(
        (3.0, 4.5, 6.0, 9.0, 12.0), min_length=1, description="Circular aperture radii (pixels)."
    )
    do_apply_ap_corr: bool = Field(True, description="Apply aperture corrections to PSF fluxes.")
    do_mask_bright_objects: bool = Field(
        True, description="Flag sources inside bright-object masks (needs brightObjectMask)."
    )
    centroid_stamp_size: int = Field(15, ge=5, description="Stamp size (pixels) for centroids.")


class MeasureMergedCoaddSourcesTask(PipelineTask[MeasureMergedCoaddSourcesConfig]):
    """Measure centroids, shapes and fluxes of ``deepCoadd_deblendedFlux`` -> ``deepCoadd_meas``."""

    default_label = "measure"
    dimensions = PATCH_BAND
    ConfigClass = MeasureMergedCoaddSourcesConfig

    input_catalog = Input(
        dataset_type_name="deepCoadd_deblendedFlux",
        dimensions=PATCH_BAND,
        storage_class=SOURCE_CATALOG,
        doc="Deblended sources to measure.",
    )
    exposure = Input(
        dataset_type_name="deepCoadd",
        dimensions=PATCH_BAND,
        storage_class=EXPOSURE,
        doc="The band's coadd.",
    )
    bright_object_mask = PrerequisiteInput(
        dataset_type_name="brightObjectMask",
        dimensions=PATCH,
        storage_class=OBJECT_MASK,
        doc="Bright-star mask regions of the patch.",
    )
    output_sources = Output(
        dataset_type_name="deepCoadd_meas",
        dimensions=PATCH_BAND,
        storage_class=SOURCE_CATALOG,
        doc="Measured sources.",
    )

    @classmethod
    def adjust_connections(
        cls, config: TaskConfig, connections: dict[str, BaseConnection]
    ) -> dict[str, BaseConnection]:
        """Drop ``bright_object_mask`` when ``do_mask_bright_objects`` is off."""
        assert isinstance(config, MeasureMergedCoaddSourcesConfig)
        if config.do_mask_bright_objects:
            return connections
        return {n: c for n, c in connections.items() if n != "bright_object_mask"}

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Return ``{"output_sources": Table}`` (SCIENCE: issue 6)."""
        raise NotImplementedError(NOT_YET.format(type(self).__name__))
