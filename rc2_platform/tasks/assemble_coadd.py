"""assembleCoadd: combine the warps of one band on one patch into a coadd."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from astropy.io import fits
from pydantic import Field

from rc2_platform.core.exposure import Exposure
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
    SKY_MAP,
    SKYMAP,
    VISIT_PATCH,
)
from rc2_platform.tasks._helpers import (
    add_mask_planes,
    as_exposure,
    band_of,
    header_of,
    load,
    load_all,
    mask_regions,
    patch_geometry,
    planes,
    psf_fwhm,
    shape2,
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
    max_psf_fwhm_pixels: float | None = Field(
        4.5,
        gt=0,
        description="Warps whose PSF FWHM (coadd pixels) is wider are left out (bad seeing, "
        "wind shake, defocus; the presets' seeing is 2.3-2.75 px); None keeps every warp.",
    )


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

    def run_quantum(self, inputs: Mapping[str, Any], data_id: Mapping[str, Any]) -> dict[str, Any]:
        """Run with the quantum's data ID (the patch, for the bright-object mask grid)."""
        self.metadata.setdefault("data_id", dict(data_id))
        return self.run(**inputs, data_id=data_id)

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Return ``{"coadd_exposure": Exposure}``: the band's coadd of the patch in nJy.

        ``MEANCLIP`` is :func:`~rc2_platform.tasks.algorithms.assemble_coadd` with
        ``nsigma = sigma_clip`` (per-pixel rejection against the median of >= 3
        inputs), ``MEAN`` the same without rejection, ``MEDIAN`` the per-pixel median
        of the valid inputs. Bright-object regions set BRIGHT_OBJECT. The header has
        ``BAND``, ``PSF_FWHM`` (rms of the warps' FWHMs, each weighted by its pixel
        weight x the pixels it is used on), ``N_WARPS`` and the
        input visits (``VISITS``).

        Raises
        ------
        TaskDataError
            If fewer than ``min_warps`` warps are given, or no warp has a usable PSF
        (every one wider than ``max_psf_fwhm_pixels``, or without a valid pixel).
        """
        from rc2_platform.tasks.algorithms import (
            TaskDataError,
            assemble_coadd,
            bright_object_mask,
            coadd_psf_fwhm,
        )

        cfg = self.config
        warps = [as_exposure(w, "warp") for w in load_all(inputs["input_warps"])]
        if len(warps) < cfg.min_warps:
            raise TaskDataError(
                f"{len(warps)} warp(s) for this patch and band, need min_warps={cfg.min_warps}"
            )
        data_id = inputs.get("data_id") or self.metadata.get("data_id") or {}
        warps = self._usable_warps(warps, data_id)
        first = warps[0]
        mask_bool = None
        regions = mask_regions(load(inputs.get("bright_object_mask")))
        if regions and cfg.do_mask_bright_objects and first.wcs is not None:
            mask_bool = bright_object_mask(regions, first.wcs, shape2(first))
        stacked = [planes(w) for w in warps]
        result = assemble_coadd(
            [s[0] for s in stacked],
            [s[1] for s in stacked],
            [s[2] for s in stacked],
            nsigma=cfg.sigma_clip if cfg.statistic == "MEANCLIP" else np.inf,
            bright_object_mask=mask_bool,
        )
        image, variance = result.image, result.variance
        if cfg.statistic == "MEDIAN":
            image, variance = _median_stack(stacked)
        if not np.any(result.weights * result.pixels_used > 0):
            raise TaskDataError(
                f"no usable PSF for the coadd of {_where(data_id)}: none of its "
                f"{len(warps)} warp(s) has a valid pixel to weight its PSF"
            )
        fwhm = coadd_psf_fwhm(  # each warp by its weight x the pixels it is used on
            [psf_fwhm(header_of(w), "warp") for w in warps],
            [float(w) * float(n) for w, n in zip(result.weights, result.pixels_used, strict=True)],
        )
        header = fits.Header()
        header["BAND"] = band_of(header_of(first))
        for key in ("TRACT", "PATCH"):
            if key in header_of(first):
                header[key] = header_of(first)[key]
        if data_id:
            header["TRACT"], header["PATCH"] = int(data_id["tract"]), int(data_id["patch"])
        header["PSF_FWHM"] = (fwhm, "coadd PSF FWHM (pixels), Gaussian approximation")
        header["N_WARPS"] = (len(warps), "warps combined")
        header["VISITS"] = ",".join(str(header_of(w).get("VISIT", "?")) for w in warps)[:68]
        header["STATIST"] = cfg.statistic
        header["N_MASKRG"] = (len(regions), "bright-object regions applied")
        header["BUNIT"] = "nJy"
        add_mask_planes(header)
        if data_id:
            patch_geometry(inputs["sky_map"], data_id)  # validates the patch exists
        self.metadata.update(
            {
                "n_warps": len(warps),
                "n_warps_psf_rejected": self.metadata.get("n_warps_psf_rejected", 0),
                "psf_fwhm": fwhm,
                "n_mask_regions": len(regions),
            }
        )
        coadd = Exposure(image, result.mask, variance, header, first.wcs)
        return {"coadd_exposure": coadd}

    def _usable_warps(self, warps: list[Exposure], data_id: Mapping[str, Any]) -> list[Exposure]:
        """The warps whose PSF is no wider than ``max_psf_fwhm_pixels``.

        Raises
        ------
        TaskDataError
            If none is left, or fewer than ``min_warps``.
        """
        from rc2_platform.tasks.algorithms import TaskDataError

        limit = self.config.max_psf_fwhm_pixels
        fwhms = [psf_fwhm(header_of(w), "warp") for w in warps]
        kept = [w for w, f in zip(warps, fwhms, strict=True) if limit is None or f <= limit]
        self.metadata["n_warps_psf_rejected"] = len(warps) - len(kept)
        if not kept:
            widths = ", ".join(f"{f:.1f}" for f in sorted(fwhms))
            raise TaskDataError(
                f"no usable PSF for the coadd of {_where(data_id)}: the PSF FWHM of every "
                f"warp ({widths} px) is wider than max_psf_fwhm_pixels={limit:g}; its "
                "visits had bad seeing or were out of focus"
            )
        if len(kept) < self.config.min_warps:
            raise TaskDataError(
                f"{len(kept)} warp(s) with a usable PSF for {_where(data_id)} "
                f"({len(warps) - len(kept)} wider than max_psf_fwhm_pixels={limit:g}), "
                f"need min_warps={self.config.min_warps}"
            )
        return kept


def _where(data_id: Mapping[str, Any]) -> str:
    """``tract 9615 patch 40 band 'r'`` (what the data ID has of them)."""
    parts = [f"{k} {data_id[k]!r}" for k in ("tract", "patch", "band") if k in data_id]
    return " ".join(parts) or "this patch and band"


def _median_stack(
    stacked: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel median of the valid warp pixels and its approximate variance."""
    import warnings

    from rc2_platform.tasks.algorithms.coadd import COADD_REJECT_BITS

    img = np.stack([np.where((m & COADD_REJECT_BITS) == 0, i, np.nan) for i, _, m in stacked])
    var = np.stack(
        [np.where(np.isfinite(i), v, np.nan) for i, (_, v, _) in zip(img, stacked, strict=True)]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nan_to_num(np.nanmedian(img, axis=0))
        n = np.maximum(np.sum(np.isfinite(img), axis=0), 1)
        variance = np.nan_to_num(np.pi / 2 * np.nanmean(var, axis=0) / n)
    return median.astype(np.float32), variance.astype(np.float32)
