"""mergeDetections: merge the detections of all bands of one patch."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from rc2_platform.pipeline import Input, Output, PipelineTask, TaskConfig
from rc2_platform.tasks._common import (
    NOT_YET,
    PATCH,
    PATCH_BAND,
    SKY_MAP,
    SKYMAP,
    SOURCE_CATALOG,
)


class MergeDetectionsConfig(TaskConfig):
    """Configuration of :class:`MergeDetectionsTask`."""

    priority_list: tuple[str, ...] = Field(
        ("i", "r", "z", "y", "g"), description="Bands in order of priority for peak positions."
    )
    min_new_peak_distance_arcsec: float = Field(
        1.0, gt=0, description="A peak closer than this to an existing one is merged into it."
    )
    min_bands: int = Field(1, ge=1, description="Fewest bands' detections needed to merge.")


class MergeDetectionsTask(PipelineTask[MergeDetectionsConfig]):
    """Merge ``deepCoadd_det`` of every band into one ``deepCoadd_mergeDet`` per patch."""

    default_label = "mergeDetections"
    dimensions = PATCH
    ConfigClass = MergeDetectionsConfig

    catalogs = Input(
        dataset_type_name="deepCoadd_det",
        dimensions=PATCH_BAND,
        storage_class=SOURCE_CATALOG,
        multiple=True,
        doc="Detections of each band.",
    )
    sky_map = Input(
        dataset_type_name="skyMap",
        dimensions=SKYMAP,
        storage_class=SKY_MAP,
        doc="The sky map (patch WCS for peak distances).",
    )
    output_catalog = Output(
        dataset_type_name="deepCoadd_mergeDet",
        dimensions=PATCH,
        storage_class=SOURCE_CATALOG,
        doc="Merged footprints and peaks of all bands.",
    )

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Return ``{"output_catalog": Table}`` (SCIENCE: issue 6)."""
        raise NotImplementedError(NOT_YET.format(type(self).__name__))
