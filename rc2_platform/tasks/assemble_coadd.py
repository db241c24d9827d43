"""assembleCoadd: combine the warps of one band on one patch into a coadd."""

from __future__ import annotations

from typing import Any, Literal

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
    SKY_MAP,
    SKYMAP,
    VISIT_PATCH,
)


class AssembleCoaddConfig(TaskConfig):
    """Configuration of :class:`AssembleCoaddTask`."""

    statistic: Literal["MEANCLIP", "MEAN", "MEDIAN"] = Field(
        "MEANCLIP", description="How the warps of a pixel are combined."
    )
    sigma_clip: float = Field(3.0, gt=0, description="Clipping threshold (sigma) for MEANCLIP.")
    n_iter: int = Field(2, ge=1, le=10, description="Clipping iterations for MEANCLIP.")
    do_mask_bright_objects: bool = Field(
        True, description="Mask the bright-object regions of the patch (needs brightObjectMask)."
    )
    min_warps: int = Field(1, ge=1, description="Fewest warps needed to build a coadd.")


class AssembleCoaddTask(PipelineTask[AssembleCoaddConfig]):
    """Build ``deepCoadd`` from the ``deepCoadd_directWarp`` of every visit of one band."""

    default_label = "assembleCoadd"
    dimensions = PATCH_BAND
    ConfigClass = AssembleCoaddConfig

    input_warps = Input(
        dataset_type_name="deepCoadd_directWarp",
        dimensions=VISIT_PATCH,
        storage_class=EXPOSURE,
        multiple=True,
        deferred_load=True,
        doc="Warps of the band's visits on the patch.",
    )
    sky_map = Input(
        dataset_type_name="skyMap",
        dimensions=SKYMAP,
        storage_class=SKY_MAP,
        doc="The sky map (patch geometry).",
    )
    bright_object_mask = PrerequisiteInput(
        dataset_type_name="brightObjectMask",
        dimensions=PATCH,
        storage_class=OBJECT_MASK,
        doc="Bright-star mask regions of the patch.",
    )
    coadd_exposure = Output(
        dataset_type_name="deepCoadd",
        dimensions=PATCH_BAND,
        storage_class=EXPOSURE,
        doc="The coadded image.",
    )

    @classmethod
    def adjust_connections(
        cls, config: TaskConfig, connections: dict[str, BaseConnection]
    ) -> dict[str, BaseConnection]:
        """Drop ``bright_object_mask`` when ``do_mask_bright_objects`` is off."""
        assert isinstance(config, AssembleCoaddConfig)
        if config.do_mask_bright_objects:
            return connections
        return {n: c for n, c in connections.items() if n != "bright_object_mask"}

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Return ``{"coadd_exposure": Exposure}`` (SCIENCE: issue 6)."""
        raise NotImplementedError(NOT_YET.format(type(self).__name__))
