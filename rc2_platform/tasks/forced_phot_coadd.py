"""forcedPhotCoadd: forced photometry of the reference catalog on each band's coadd."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from rc2_platform.pipeline import Input, Output, PipelineTask, TaskConfig
from rc2_platform.tasks._common import EXPOSURE, PATCH, PATCH_BAND, SOURCE_CATALOG
from rc2_platform.tasks._helpers import (
    aperture_correction,
    apply_aperture_correction,
    as_exposure,
    band_of,
    header_of,
    load,
    psf_fwhm,
)


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
        """Return ``{"measurement": Table}``: forced fluxes of every reference object.

        :func:`~rc2_platform.tasks.algorithms.forced_photometry` at the reference
        ``ra``/``dec`` through this band's coadd WCS (no re-centroiding, no deblending:
        neighbours contaminate the apertures, not much the PSF flux). The PSF fluxes
        are aperture-corrected to the largest aperture (meta ``APCORR``); with
        ``do_psf_flux`` false the PSF flux columns are removed. Keeps ``ref_band``.
        Meta ``DEPTH5``: the coadd's 5-sigma point-source depth (AB mag, from its
        median variance and PSF, :func:`~rc2_platform.tasks.algorithms.point_source_depth`),
        the depth ``rc2 validate`` states and measures completeness against.
        """
        from rc2_platform.tasks.algorithms import forced_photometry, point_source_depth
        from rc2_platform.tasks.algorithms._psf import FWHM_PER_SIGMA
        from rc2_platform.tasks.algorithms.measurement import aperture_column

        cfg = self.config
        reference = load(inputs["ref_cat"])
        coadd = as_exposure(load(inputs["exposure"]), "deepCoadd")
        header = header_of(coadd)
        band = band_of(header)
        fwhm = psf_fwhm(header, "deepCoadd")
        table = forced_photometry(
            np.asarray(coadd.image, dtype=np.float64),
            np.asarray(coadd.variance, dtype=np.float64),
            coadd.mask,
            reference,
            wcs=coadd.wcs,
            psf_sigma=fwhm / FWHM_PER_SIGMA,
            band=band,
            aperture_radii=cfg.aperture_radii_pixels,
        )
        if "n_peaks" in reference.colnames:
            table["n_peaks"] = np.asarray(reference["n_peaks"])
        if "ref_band" in reference.colnames:
            table["ref_band"] = reference["ref_band"]
        factor = aperture_correction(table, aperture_column(max(cfg.aperture_radii_pixels)))
        apply_aperture_correction(table, factor)
        if not cfg.do_psf_flux:
            table.remove_columns(["psf_flux", "psf_flux_err", "psf_mag", "psf_mag_err", "snr"])
        variance = np.asarray(coadd.variance, dtype=np.float64)
        depth = point_source_depth(variance, coadd.mask, fwhm / FWHM_PER_SIGMA)
        table.meta.update({"BAND": band, "PSF_FWHM": fwhm, "APCORR": factor, "DEPTH5": depth})
        self.metadata.update(
            {"n_objects": len(table), "aperture_correction": factor, "depth_5sigma": depth}
        )
        return {"measurement": table}
