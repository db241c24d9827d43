"""detection: detect sources on one band's coadd of one patch."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from rc2_platform.pipeline import Input, Output, PipelineTask, TaskConfig
from rc2_platform.tasks._common import EXPOSURE, PATCH_BAND, SOURCE_CATALOG
from rc2_platform.tasks._helpers import (
    as_exposure,
    band_of,
    encode_footprints,
    header_of,
    load,
    psf_fwhm,
)


class DetectCoaddSourcesConfig(TaskConfig):
    """Configuration of :class:`DetectCoaddSourcesTask`."""

    detection_threshold_sigma: float = Field(5.0, gt=0, description="Threshold (sigma).")
    do_scale_variance: bool = Field(
        True, description="Rescale the coadd variance to match the measured pixel noise."
    )
    min_footprint_pixels: int = Field(5, ge=1, description="Smallest footprint kept (pixels).")


class DetectCoaddSourcesTask(PipelineTask[DetectCoaddSourcesConfig]):
    """Detect footprints and peaks on ``deepCoadd`` -> ``deepCoadd_det``."""

    default_label = "detection"
    dimensions = PATCH_BAND
    ConfigClass = DetectCoaddSourcesConfig

    exposure = Input(
        dataset_type_name="deepCoadd",
        dimensions=PATCH_BAND,
        storage_class=EXPOSURE,
        doc="The coadd to search.",
    )
    output_sources = Output(
        dataset_type_name="deepCoadd_det",
        dimensions=PATCH_BAND,
        storage_class=SOURCE_CATALOG,
        doc="Detected footprints and peaks.",
    )

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Return ``{"output_sources": Table}``: peaks with their footprints.

        :func:`~rc2_platform.tasks.algorithms.detect_sources` with the coadd's Gaussian
        PSF as matched filter. With ``do_scale_variance`` the variance is first scaled
        by the squared robust scatter of ``image / sqrt(variance)`` over unmasked pixels
        (the warps' resampling correlates noise, so the nominal variance is too small).
        One row per peak (``peak_id``, ``footprint_id``, ``x``, ``y``, ``significance``,
        ``ra``/``dec``); footprints are run-length spans (``span_y``, ``span_x0``,
        ``span_x1``) on the first peak of each footprint. Meta: ``BAND``, ``PSF_FWHM``.
        """
        from rc2_platform.tasks.algorithms import detect_sources, robust_sigma
        from rc2_platform.tasks.algorithms._psf import FWHM_PER_SIGMA
        from rc2_platform.tasks.algorithms.mask_bits import BAD, NO_DATA

        cfg = self.config
        coadd = as_exposure(load(inputs["exposure"]), "deepCoadd")
        header = header_of(coadd)
        fwhm = psf_fwhm(header, "deepCoadd")
        image = np.asarray(coadd.image, dtype=np.float64)
        variance = np.asarray(coadd.variance, dtype=np.float64)
        mask = np.zeros(coadd.shape, np.int32) if coadd.mask is None else coadd.mask.copy()
        scale = 1.0
        good = ((mask & (BAD | NO_DATA)) == 0) & (variance > 0) & np.isfinite(image)
        if cfg.do_scale_variance and good.sum() > 100:
            scale = robust_sigma(image[good] / np.sqrt(variance[good])) ** 2
            variance = variance * scale
        result = detect_sources(
            image,
            variance,
            psf_sigma=fwhm / FWHM_PER_SIGMA,
            threshold=cfg.detection_threshold_sigma,
            mask=mask,
            min_pixels=cfg.min_footprint_pixels,
            wcs=coadd.wcs,
        )
        table = result.peaks
        encode_footprints(table, result.labels, "footprint_id")
        table.meta.update({"BAND": band_of(header), "PSF_FWHM": fwhm, "VARSCALE": scale})
        self.metadata.update(
            {"n_footprints": result.n_footprints, "n_peaks": len(table), "variance_scale": scale}
        )
        return {"output_sources": table}
