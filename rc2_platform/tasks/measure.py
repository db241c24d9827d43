"""measure: measure deblended sources on one band's coadd."""

from __future__ import annotations

from typing import Any

import numpy as np
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
    OBJECT_MASK,
    PATCH,
    PATCH_BAND,
    SOURCE_CATALOG,
)
from rc2_platform.tasks._helpers import (
    aperture_correction,
    apply_aperture_correction,
    as_exposure,
    band_of,
    deblend_from_table,
    header_of,
    load,
    mask_regions,
    planes,
    psf_fwhm,
    shape2,
)
from rc2_platform.tasks.algorithms.measurement import aperture_column


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
        """Return ``{"output_sources": Table}``: every deblended child measured.

        :func:`~rc2_platform.tasks.algorithms.measure_coadd` (neighbours replaced by
        their deblended models): Gaussian-weighted centroid, aperture fluxes at
        ``aperture_radii_pixels``, PSF flux, adaptive moments, flags; fluxes in nJy,
        ``ra``/``dec`` from the coadd WCS. Bright-object regions are ORed into the mask
        (``flag_bright_object``). With ``do_apply_ap_corr`` the PSF fluxes are scaled to
        the largest aperture (median ratio of bright isolated stars; meta ``APCORR``).
        """
        from rc2_platform.tasks.algorithms import bright_object_mask, measure_coadd
        from rc2_platform.tasks.algorithms._psf import FWHM_PER_SIGMA
        from rc2_platform.tasks.algorithms.mask_bits import BRIGHT_OBJECT

        cfg = self.config
        table_in = load(inputs["input_catalog"])
        coadd = as_exposure(load(inputs["exposure"]), "deepCoadd")
        header = header_of(coadd)
        band = band_of(header)
        image, variance, mask = planes(coadd)
        regions = mask_regions(load(inputs.get("bright_object_mask")))
        if regions and cfg.do_mask_bright_objects and coadd.wcs is not None:
            mask[bright_object_mask(regions, coadd.wcs, shape2(coadd))] |= BRIGHT_OBJECT
        deblended = deblend_from_table(table_in)
        table = measure_coadd(
            image,
            variance,
            mask,
            deblended,
            psf_sigma=psf_fwhm(header, "deepCoadd") / FWHM_PER_SIGMA,
            band=band,
            wcs=coadd.wcs,
            aperture_radii=cfg.aperture_radii_pixels,
        )
        table["n_peaks"] = np.asarray(deblended.catalog["n_peaks"])
        factor = 1.0
        if cfg.do_apply_ap_corr:
            factor = aperture_correction(table, aperture_column(max(cfg.aperture_radii_pixels)))
            apply_aperture_correction(table, factor)
        table.meta.update(
            {"BAND": band, "PSF_FWHM": psf_fwhm(header, "deepCoadd"), "APCORR": factor}
        )
        self.metadata.update({"n_sources": len(table), "aperture_correction": factor})
        return {"output_sources": table}
