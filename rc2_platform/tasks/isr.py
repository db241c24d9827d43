"""isr: instrument signature removal of one raw detector image."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from rc2_platform.pipeline import (
    BaseConnection,
    Input,
    LookupKind,
    Output,
    PipelineTask,
    PrerequisiteInput,
    TaskConfig,
)
from rc2_platform.tasks._common import EXPOSURE, EXPOSURE_DETECTOR, NOT_YET


class IsrConfig(TaskConfig):
    """Configuration of :class:`IsrTask`."""

    do_overscan: bool = Field(True, description="Subtract the overscan level.")
    overscan_fit_order: int = Field(
        1, ge=0, le=5, description="Polynomial order of the overscan fit."
    )
    do_bias: bool = Field(True, description="Subtract the master bias.")
    do_dark: bool = Field(True, description="Subtract the master dark scaled by exposure time.")
    do_flat: bool = Field(True, description="Divide by the master flat.")
    do_saturation: bool = Field(True, description="Mask saturated pixels.")
    saturation_level: float = Field(
        65000.0, gt=0, description="Pixel value (ADU) at and above which a pixel is saturated."
    )
    do_interpolate_bad: bool = Field(True, description="Interpolate over bad and saturated pixels.")
    gain: float | None = Field(
        None, gt=0, description="Gain (e-/ADU) overriding the camera's per-detector value."
    )


class IsrTask(PipelineTask[IsrConfig]):
    """Turn a raw detector image into a calibrated ``postISRCCD`` exposure.

    Calibrations (bias, dark, flat) are prerequisites found by the validity time of
    the exposure; a disabled step (``do_bias=False`` ...) drops its connection.
    """

    default_label = "isr"
    dimensions = EXPOSURE_DETECTOR
    ConfigClass = IsrConfig

    ccd_exposure = Input(
        dataset_type_name="raw",
        dimensions=EXPOSURE_DETECTOR,
        storage_class=EXPOSURE,
        doc="The raw detector image.",
    )
    bias = PrerequisiteInput(
        dataset_type_name="bias",
        dimensions=("instrument", "detector"),
        storage_class=EXPOSURE,
        lookup=LookupKind.CALIBRATION,
        doc="Master bias valid at the exposure's time.",
    )
    dark = PrerequisiteInput(
        dataset_type_name="dark",
        dimensions=("instrument", "detector"),
        storage_class=EXPOSURE,
        lookup=LookupKind.CALIBRATION,
        doc="Master dark valid at the exposure's time.",
    )
    flat = PrerequisiteInput(
        dataset_type_name="flat",
        dimensions=("instrument", "detector", "physical_filter"),
        storage_class=EXPOSURE,
        lookup=LookupKind.CALIBRATION,
        doc="Master flat of the exposure's filter valid at its time.",
    )
    output_exposure = Output(
        dataset_type_name="postISRCCD",
        dimensions=EXPOSURE_DETECTOR,
        storage_class=EXPOSURE,
        doc="The instrument-signature-removed image.",
    )

    @classmethod
    def adjust_connections(
        cls, config: TaskConfig, connections: dict[str, BaseConnection]
    ) -> dict[str, BaseConnection]:
        """Drop the bias/dark/flat prerequisite whose ``do_*`` flag is off."""
        assert isinstance(config, IsrConfig)
        off = {n for n in ("bias", "dark", "flat") if not getattr(config, f"do_{n}")}
        return {n: c for n, c in connections.items() if n not in off}

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Return ``{"output_exposure": Exposure}`` (SCIENCE: issue 6 implements this)."""
        raise NotImplementedError(NOT_YET.format(type(self).__name__))
