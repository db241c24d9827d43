"""makeWarp: resample the calexps of one visit onto one patch."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from rc2_platform.pipeline import Input, Output, PipelineTask, TaskConfig
from rc2_platform.tasks._common import (
    EXPOSURE,
    NOT_YET,
    SKY_MAP,
    SKYMAP,
    VISIT_DETECTOR,
    VISIT_PATCH,
)


class MakeWarpConfig(TaskConfig):
    """Configuration of :class:`MakeWarpTask`."""

    warping_kernel: Literal["lanczos3", "lanczos4", "bilinear", "nearest"] = Field(
        "lanczos3", description="Interpolation kernel used to resample calexps."
    )
    min_coverage_fraction: float = Field(
        0.0, ge=0, le=1, description="Skip warps covering less than this fraction of the patch."
    )
    border_pixels: int = Field(0, ge=0, description="Calexp edge pixels ignored when warping.")


class MakeWarpTask(PipelineTask[MakeWarpConfig]):
    """Warp every detector of one visit that overlaps a patch into ``deepCoadd_directWarp``.

    The quantum's dimensions include ``instrument`` because ``visit`` requires it
    (DESIGN.md lists ``skymap, tract, patch, visit``).
    """

    default_label = "makeWarp"
    dimensions = VISIT_PATCH
    ConfigClass = MakeWarpConfig

    calexp_list = Input(
        dataset_type_name="calexp",
        dimensions=VISIT_DETECTOR,
        storage_class=EXPOSURE,
        multiple=True,
        deferred_load=True,
        doc="Calexps of the visit's detectors overlapping the patch.",
    )
    sky_map = Input(
        dataset_type_name="skyMap",
        dimensions=SKYMAP,
        storage_class=SKY_MAP,
        doc="The sky map (tract and patch geometry).",
    )
    direct_warp = Output(
        dataset_type_name="deepCoadd_directWarp",
        dimensions=VISIT_PATCH,
        storage_class=EXPOSURE,
        doc="The visit resampled onto the patch.",
    )

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Return ``{"direct_warp": Exposure}`` (SCIENCE: issue 6)."""
        raise NotImplementedError(NOT_YET.format(type(self).__name__))
