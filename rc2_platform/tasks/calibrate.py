"""calibrate: astrometric and photometric calibration of one detector against a refcat."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from rc2_platform.pipeline import (
    Input,
    LookupKind,
    Output,
    PipelineTask,
    PrerequisiteInput,
    TaskConfig,
)
from rc2_platform.tasks._common import (
    DEFAULT_REFCAT,
    EXPOSURE,
    NOT_YET,
    REFCAT_SHARD,
    SOURCE_CATALOG,
    VISIT_DETECTOR,
)


class CalibrateConfig(TaskConfig):
    """Configuration of :class:`CalibrateTask`."""

    detection_threshold_sigma: float = Field(
        5.0, gt=0, description="Detection threshold of the full-depth source catalog (sigma)."
    )
    do_astrometry: bool = Field(True, description="Fit the WCS to the reference catalog.")
    do_photo_cal: bool = Field(True, description="Fit the photometric zero point.")
    match_radius_arcsec: float = Field(
        1.0, gt=0, le=30, description="Largest source-to-reference distance of a match (arcsec)."
    )
    min_matches: int = Field(5, ge=1, description="Fewest reference matches for a valid fit.")
    astrometry_fit_order: int = Field(1, ge=0, le=4, description="Polynomial order of the WCS fit.")
    reference_mag_limit: float = Field(
        22.0, description="Faintest reference magnitude used for matching."
    )


class CalibrateTask(PipelineTask[CalibrateConfig]):
    """Detect and measure all sources, then fit WCS and zero point to the refcat.

    The reference catalog is sharded by ``htm7``; every shard overlapping the
    detector is a prerequisite input (spatial lookup), loaded lazily.
    """

    default_label = "calibrate"
    dimensions = VISIT_DETECTOR
    ConfigClass = CalibrateConfig

    exposure = Input(
        dataset_type_name="icExp",
        dimensions=VISIT_DETECTOR,
        storage_class=EXPOSURE,
        doc="Characterized image with PSF.",
    )
    ic_source_cat = Input(
        dataset_type_name="icSrc",
        dimensions=VISIT_DETECTOR,
        storage_class=SOURCE_CATALOG,
        doc="Bright sources from characterizeImage.",
    )
    ref_cat = PrerequisiteInput(
        dataset_type_name=DEFAULT_REFCAT,
        dimensions=("htm7",),
        storage_class=REFCAT_SHARD,
        lookup=LookupKind.SPATIAL,
        multiple=True,
        deferred_load=True,
        doc="Reference catalog shards overlapping the detector.",
    )
    output_exposure = Output(
        dataset_type_name="calexp",
        dimensions=VISIT_DETECTOR,
        storage_class=EXPOSURE,
        doc="Calibrated exposure (WCS and photometric calibration attached).",
    )
    output_cat = Output(
        dataset_type_name="src",
        dimensions=VISIT_DETECTOR,
        storage_class=SOURCE_CATALOG,
        doc="Calibrated source catalog.",
    )

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Return ``{"output_exposure": ..., "output_cat": ...}`` (SCIENCE: issue 6)."""
        raise NotImplementedError(NOT_YET.format(type(self).__name__))
