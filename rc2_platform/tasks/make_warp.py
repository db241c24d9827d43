"""makeWarp: resample the calexps of one visit onto one patch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from astropy.io import fits
from pydantic import Field

from rc2_platform.core.exposure import Exposure
from rc2_platform.pipeline import Input, Output, PipelineTask, TaskConfig
from rc2_platform.tasks._common import (
    EXPOSURE,
    SKY_MAP,
    SKYMAP,
    VISIT_DETECTOR,
    VISIT_PATCH,
)
from rc2_platform.tasks._helpers import (
    add_mask_planes,
    as_exposure,
    band_of,
    header_of,
    load_all,
    number,
    patch_geometry,
    planes,
    psf_fwhm,
)

#: Interpolation order of scipy's map_coordinates for each configured kernel (Lanczos
#: kernels are approximated by a cubic spline, see docs/science.md).
_KERNEL_ORDER = {"lanczos3": 3, "lanczos4": 3, "bilinear": 1, "nearest": 0}


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

    def run_quantum(self, inputs: Mapping[str, Any], data_id: Mapping[str, Any]) -> dict[str, Any]:
        """Run with the quantum's data ID (the patch to warp onto)."""
        self.metadata.setdefault("data_id", dict(data_id))
        return self.run(**inputs, data_id=data_id)

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Return ``{"direct_warp": Exposure}`` on the patch's outer-box pixel grid, in nJy.

        ``inputs`` are the connections plus ``data_id`` (with ``tract`` and ``patch``).
        Each calexp is scaled to nJy with its ``NJYCOUNT`` (from calibrate),
        ``border_pixels`` edge pixels are masked NO_DATA, and the detectors are resampled
        by :func:`~rc2_platform.tasks.algorithms.warp_images`. The warp header has
        ``VISIT``, ``BAND``, ``PSF_FWHM`` (patch pixels, the mean of the detectors scaled
        by the pixel-scale ratio) and ``COVERAGE``.

        Raises
        ------
        TaskDataError
            If no calexp lands on the patch, or the coverage is below
            ``min_coverage_fraction``.
        """
        from rc2_platform.tasks.algorithms import TaskDataError, WarpInput, warp_images
        from rc2_platform.tasks.algorithms.mask_bits import BAD

        data_id = inputs.get("data_id") or self.metadata.get("data_id")
        if not data_id:
            raise TaskDataError("makeWarp needs the quantum data ID (tract, patch)")
        patch = patch_geometry(inputs["sky_map"], data_id)
        calexps = [as_exposure(c, "calexp") for c in load_all(inputs["calexp_list"])]
        if not calexps:
            raise TaskDataError(f"no calexp to warp for {dict(data_id)}")
        warp_inputs, fwhms = [], []
        for calexp in calexps:
            header = header_of(calexp)
            image, variance, mask = planes(calexp)
            b = self.config.border_pixels
            if b:
                edge = np.ones(calexp.shape, bool)
                edge[b:-b, b:-b] = False
                mask[edge] |= BAD
            warp_inputs.append(
                WarpInput(
                    image,
                    variance,
                    mask,
                    calexp.wcs,
                    number(header, "NJYCOUNT", None),
                )
            )
            fwhms.append(psf_fwhm(header, "calexp") * _scale_ratio(calexp, patch.wcs))
        shape = (patch.outer_bbox.height, patch.outer_bbox.width)
        result = warp_images(
            warp_inputs,
            patch.tract.wcs,
            shape,
            origin=patch.pixel_origin,
            order=_KERNEL_ORDER[self.config.warping_kernel],
        )
        if result.n_inputs == 0 or result.coverage <= self.config.min_coverage_fraction:
            raise TaskDataError(
                f"visit {data_id.get('visit')} covers {result.coverage:.1%} of patch "
                f"{data_id.get('patch')} (min_coverage_fraction "
                f"{self.config.min_coverage_fraction:.1%}); no warp written"
            )
        first = header_of(calexps[0])
        header = fits.Header()
        for key in ("VISIT", "EXP-ID", "FILTER01", "MJD", "EXPTIME", "OBJECT"):
            if key in first:
                header[key] = first[key]
        header["VISIT"] = int(data_id.get("visit", first.get("VISIT", -1)))
        header["BAND"] = band_of(first)
        header["TRACT"], header["PATCH"] = int(data_id["tract"]), int(data_id["patch"])
        header["PSF_FWHM"] = (float(np.mean(fwhms)), "PSF FWHM (patch pixels)")
        header["COVERAGE"] = (result.coverage, "fraction of the patch with data")
        header["N_DET"] = (result.n_inputs, "detectors warped")
        header["BUNIT"] = "nJy"
        add_mask_planes(header)
        self.metadata.update({"coverage": result.coverage, "n_detectors": result.n_inputs})
        warp = Exposure(result.image, result.mask, result.variance, header, patch.wcs)
        return {"direct_warp": warp}


def _scale_ratio(calexp: Exposure, wcs_out: Any) -> float:
    """Input pixel size over output pixel size (to express a FWHM in output pixels)."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    return float(
        np.sqrt(np.prod(proj_plane_pixel_scales(calexp.wcs)))
        / np.sqrt(np.prod(proj_plane_pixel_scales(wcs_out)))
    )
