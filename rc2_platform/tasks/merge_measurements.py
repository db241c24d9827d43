"""mergeMeasurements: choose the reference band of every object of one patch."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from rc2_platform.pipeline import Input, Output, PipelineTask, TaskConfig
from rc2_platform.tasks._common import NOT_YET, PATCH, PATCH_BAND, SOURCE_CATALOG


class MergeMeasurementsConfig(TaskConfig):
    """Configuration of :class:`MergeMeasurementsTask`."""

    priority_list: tuple[str, ...] = Field(
        ("i", "r", "z", "y", "g"), description="Bands in order of priority as reference band."
    )
    min_sn: float = Field(
        10.0, gt=0, description="Signal-to-noise a band needs to be chosen as reference."
    )
    flux_column: str = Field("psf_flux", description="Flux column used for the S/N cut.")


class MergeMeasurementsTask(PipelineTask[MergeMeasurementsConfig]):
    """Merge ``deepCoadd_meas`` of all bands into the ``deepCoadd_ref`` catalog."""

    default_label = "mergeMeasurements"
    dimensions = PATCH
    ConfigClass = MergeMeasurementsConfig

    catalogs = Input(
        dataset_type_name="deepCoadd_meas",
        dimensions=PATCH_BAND,
        storage_class=SOURCE_CATALOG,
        multiple=True,
        doc="Measurements of each band.",
    )
    merged_catalog = Output(
        dataset_type_name="deepCoadd_ref",
        dimensions=PATCH,
        storage_class=SOURCE_CATALOG,
        doc="One row per object with its reference band.",
    )

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Return ``{"merged_catalog": Table}`` (SCIENCE: issue 6)."""
        raise NotImplementedError(NOT_YET.format(type(self).__name__))
