"""characterizeImage: background, PSF and bright-source detection on one detector."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from rc2_platform.core.exposure import Exposure
from rc2_platform.pipeline import Input, Output, PipelineTask, TaskConfig
from rc2_platform.tasks._common import (
    EXPOSURE,
    EXPOSURE_DETECTOR,
    SOURCE_CATALOG,
    VISIT_DETECTOR,
)
from rc2_platform.tasks._helpers import as_exposure, clean_header, header_of, load


class CharacterizeImageConfig(TaskConfig):
    """Configuration of :class:`CharacterizeImageTask`."""

    detection_threshold_sigma: float = Field(
        5.0, gt=0, description="Detection threshold in units of the background noise."
    )
    psf_fwhm_guess_pixels: float = Field(
        4.0, gt=0, description="Initial PSF FWHM guess (pixels) used before the PSF is measured."
    )
    psf_iterations: int = Field(2, ge=1, le=10, description="Detect/measure-PSF iterations.")
    min_psf_stars: int = Field(3, ge=1, description="Fewest stars needed to fit a PSF model.")
    background_bin_size: int = Field(128, ge=8, description="Background mesh size (pixels).")


class CharacterizeImageTask(PipelineTask[CharacterizeImageConfig]):
    """Estimate background and PSF of a ``postISRCCD`` and detect bright sources."""

    default_label = "characterizeImage"
    dimensions = VISIT_DETECTOR
    ConfigClass = CharacterizeImageConfig

    exposure = Input(
        dataset_type_name="postISRCCD",
        dimensions=EXPOSURE_DETECTOR,
        storage_class=EXPOSURE,
        doc="The ISR-corrected image of the visit's exposure.",
    )
    characterized = Output(
        dataset_type_name="icExp",
        dimensions=VISIT_DETECTOR,
        storage_class=EXPOSURE,
        doc="Background-subtracted image with its PSF.",
    )
    source_cat = Output(
        dataset_type_name="icSrc",
        dimensions=VISIT_DETECTOR,
        storage_class=SOURCE_CATALOG,
        doc="Bright sources used to measure the PSF.",
    )

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Return ``{"characterized": Exposure, "source_cat": Table}``.

        Calls :func:`~rc2_platform.tasks.algorithms.characterize_image` (background,
        cosmic rays, detection, measurement, PSF FWHM). ``icExp`` is the
        background-subtracted, CR-repaired image with ``PSF_FWHM`` (pixels), ``BGMEAN``
        and ``N_CR`` in its header; ``icSrc`` carries the same numbers in its meta.

        Raises
        ------
        TaskDataError
            All-NaN or saturated image, or too few stars to measure the PSF.
        """
        from rc2_platform.tasks.algorithms import characterize_image

        cfg = self.config
        exposure = as_exposure(load(inputs["exposure"]), "postISRCCD")
        header = clean_header(header_of(exposure))
        variance = (
            exposure.variance
            if exposure.variance is not None
            else np.full(exposure.shape, np.nanvar(exposure.image))
        )
        result = characterize_image(
            np.asarray(exposure.image, dtype=np.float64),
            np.asarray(variance, dtype=np.float64),
            exposure.mask,
            psf_fwhm_guess=cfg.psf_fwhm_guess_pixels,
            detection_threshold=cfg.detection_threshold_sigma,
            mesh_size=cfg.background_bin_size,
            wcs=exposure.wcs,
        )
        n_psf = int(np.sum(result.sources["psf_candidate"]))
        if n_psf < cfg.min_psf_stars:
            from rc2_platform.tasks.algorithms import TaskDataError

            raise TaskDataError(
                f"only {n_psf} PSF stars (min_psf_stars={cfg.min_psf_stars}); the detector may "
                "be empty, masked or out of focus"
            )
        header["PSF_FWHM"] = (result.psf_fwhm, "PSF FWHM (pixels), Gaussian")
        header["BGMEAN"] = (float(np.mean(result.background)), "mean subtracted background")
        header["N_CR"] = (result.n_cosmic_rays, "pixels masked as cosmic rays")
        sources = result.sources
        sources.meta.update(
            {"PSF_FWHM": result.psf_fwhm, "N_PSF": n_psf, "THRESH": cfg.detection_threshold_sigma}
        )
        self.metadata.update(
            {
                "psf_fwhm": result.psf_fwhm,
                "n_sources": len(sources),
                "n_psf_stars": n_psf,
                "n_cosmic_ray_pixels": result.n_cosmic_rays,
            }
        )
        characterized = Exposure(
            result.image.astype(np.float32),
            result.mask,
            result.variance.astype(np.float32),
            header,
            exposure.wcs,
        )
        return {"characterized": characterized, "source_cat": sources}
