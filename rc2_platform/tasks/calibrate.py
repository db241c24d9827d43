"""calibrate: astrometric and photometric calibration of one detector against a refcat."""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.table import Table, vstack
from pydantic import Field

from rc2_platform.core.exposure import Exposure
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
    REFCAT_SHARD,
    SOURCE_CATALOG,
    VISIT_DETECTOR,
)
from rc2_platform.tasks._helpers import as_exposure, band_of, header_of, load, load_all


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
        24.0, description="Faintest reference magnitude used for matching."
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
        """Return ``{"output_exposure": calexp, "output_cat": src}``.

        The refcat shards (loaded here) are stacked and cut at
        ``reference_mag_limit`` in the image's band (``{band}_mag`` columns); the
        ``icSrc`` sources are matched with a voted offset, a TAN WCS (CRVAL + CD) is
        fitted, sources are re-matched and the zero point is the clipped median of
        ``ref_mag - inst_mag`` (:func:`~rc2_platform.tasks.algorithms.calibrate_sources`).
        The calexp keeps the icExp pixels (electrons) with the fitted WCS; its header
        gets ``ZEROPNT`` (AB mag of one electron), ``ZP_ERR``, ``ZP_NSTAR``,
        ``FLUXMAG0`` and ``NJYCOUNT`` (nJy per electron). ``src`` has ``ra``/``dec`` from
        the fitted WCS and calibrated ``psf_flux_njy``/``psf_mag`` with units.

        Raises
        ------
        TaskDataError
            "Unable to match sources" (too few matches), or no reference star in the
            shards given.
        """
        from rc2_platform.tasks.algorithms import TaskDataError, calibrate_sources

        cfg = self.config
        exposure = as_exposure(load(inputs["exposure"]), "icExp")
        sources = load(inputs["ic_source_cat"])
        header = header_of(exposure).copy()
        band = band_of(header)
        refcat = _stack_shards(load_all(inputs.get("ref_cat")), band, cfg.reference_mag_limit)
        if exposure.wcs is None:
            raise TaskDataError("the icExp has no WCS; calibrate needs an initial WCS")
        if len(refcat) < cfg.min_matches:
            raise TaskDataError(
                f"Unable to match sources: {len(refcat)} reference stars brighter than "
                f"{cfg.reference_mag_limit} in band {band}, need at least {cfg.min_matches}; "
                "check the reference catalog shards given to the quantum"
            )
        result = calibrate_sources(
            sources,
            exposure.wcs,
            refcat,
            mag_column=f"{band}_mag",
            tolerance_arcsec=cfg.match_radius_arcsec,
            min_matches=cfg.min_matches,
        )
        wcs = result.wcs if cfg.do_astrometry else exposure.wcs
        calib = result.photo_calib
        header["BAND"] = (band, "abstract band")
        header["ZEROPNT"] = (calib.zero_point, "AB mag of 1 electron")
        header["ZP_ERR"] = (calib.zero_point_err, "zero point standard error (mag)")
        header["ZP_RMS"] = (calib.scatter, "scatter of star zero points (mag)")
        header["ZP_NSTAR"] = (calib.n_stars, "stars used for the zero point")
        header["FLUXMAG0"] = (10 ** (0.4 * calib.zero_point), "counts of a mag-0 source")
        header["NJYCOUNT"] = (calib.njy_per_count, "nJy per electron")
        header["ASTRMS"] = (result.astrometry_rms, "astrometric fit rms, weighted (arcsec)")
        header["N_MATCH"] = (result.n_matches, "reference matches")
        src = result.sources
        src.meta.update(
            {"BAND": band, "ZEROPNT": calib.zero_point, "ASTRMS": result.astrometry_rms}
        )
        self.metadata.update(
            {
                "zero_point": calib.zero_point,
                "zero_point_err": calib.zero_point_err,
                "astrometry_rms_arcsec": result.astrometry_rms,
                "n_matches": result.n_matches,
            }
        )
        calexp = Exposure(exposure.image, exposure.mask, exposure.variance, header, wcs)
        return {"output_exposure": calexp, "output_cat": src}


def _stack_shards(shards: list[Any], band: str, mag_limit: float) -> Table:
    """All shard rows with ``{band}_mag`` brighter than ``mag_limit``."""
    from rc2_platform.tasks.algorithms import TaskDataError

    tables = [t if isinstance(t, Table) else Table(t) for t in shards if t is not None]
    tables = [t for t in tables if len(t)]
    column = f"{band}_mag"
    if not tables:
        return Table({"ra": np.zeros(0), "dec": np.zeros(0), column: np.zeros(0)})
    missing = [t.meta.get("HTM7", "?") for t in tables if column not in t.colnames]
    if missing:
        raise TaskDataError(
            f"reference catalog shard(s) {missing} have no {column} column; use a refcat with "
            f"magnitudes in band {band}"
        )
    keep = ["ra", "dec", column]
    ref = vstack([t[keep] for t in tables], metadata_conflicts="silent")
    mags = np.asarray(ref[column], dtype=float)
    return ref[np.isfinite(mags) & (mags <= mag_limit)]
