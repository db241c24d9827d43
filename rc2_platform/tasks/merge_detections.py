"""mergeDetections: merge the detections of all bands of one patch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import Field

from rc2_platform.pipeline import Input, Output, PipelineTask, TaskConfig
from rc2_platform.tasks._common import (
    PATCH,
    PATCH_BAND,
    SKY_MAP,
    SKYMAP,
    SOURCE_CATALOG,
)
from rc2_platform.tasks._helpers import (
    decode_footprints,
    encode_footprints,
    load_all,
    patch_geometry,
    strip_footprints,
    table_meta_band,
)


class MergeDetectionsConfig(TaskConfig):
    """Configuration of :class:`MergeDetectionsTask`."""

    priority_list: tuple[str, ...] = Field(
        ("i", "r", "z", "y", "g"), description="Bands in order of priority for peak positions."
    )
    min_new_peak_distance_arcsec: float = Field(
        1.0, gt=0, description="A peak closer than this to an existing one is merged into it."
    )
    min_new_peak_distance_fwhm: float = Field(
        1.0,
        ge=0,
        description=(
            "A peak closer than this many PSF FWHM (the widest coadd PSF of the bands, "
            "PSF_FWHM of the detection catalogs) to an existing one is merged into it; "
            "the larger of the two distances applies."
        ),
    )
    min_bands: int = Field(1, ge=1, description="Fewest bands' detections needed to merge.")


class MergeDetectionsTask(PipelineTask[MergeDetectionsConfig]):
    """Merge ``deepCoadd_det`` of every band into one ``deepCoadd_mergeDet`` per patch."""

    default_label = "mergeDetections"
    dimensions = PATCH
    ConfigClass = MergeDetectionsConfig

    catalogs = Input(
        dataset_type_name="deepCoadd_det",
        dimensions=PATCH_BAND,
        storage_class=SOURCE_CATALOG,
        multiple=True,
        doc="Detections of each band.",
    )
    sky_map = Input(
        dataset_type_name="skyMap",
        dimensions=SKYMAP,
        storage_class=SKY_MAP,
        doc="The sky map (patch WCS for peak distances).",
    )
    output_catalog = Output(
        dataset_type_name="deepCoadd_mergeDet",
        dimensions=PATCH,
        storage_class=SOURCE_CATALOG,
        doc="Merged footprints and peaks of all bands.",
    )

    def run_quantum(self, inputs: Mapping[str, Any], data_id: Mapping[str, Any]) -> dict[str, Any]:
        """Run with the quantum's data ID (the patch WCS gives peak distances in pixels)."""
        self.metadata.setdefault("data_id", dict(data_id))
        return self.run(**inputs, data_id=data_id)

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Return ``{"output_catalog": Table}``: merged peaks with parent footprints.

        The band of each input catalog is its ``BAND`` meta (written by detection), so
        the order of the inputs does not matter. Peaks within
        ``min_new_peak_distance_arcsec`` or ``min_new_peak_distance_fwhm`` PSF FWHM,
        whichever is larger, are merged in ``priority_list`` order (one star's peak moves
        by a pixel between bands; on pixels as wide as a third of the PSF, 1" is less
        than a pixel and one star became two children, each centroided towards its peak)
        (:func:`~rc2_platform.tasks.algorithms.merge_detections`); peaks found in fewer
        than ``min_bands`` bands are dropped. Footprints (the union over bands) are
        stored as spans on the first peak of each parent (``parent_id``).
        """
        from rc2_platform.tasks.algorithms import TaskDataError, merge_detections
        from rc2_platform.tasks.algorithms.detection import DetectionResult

        cfg = self.config
        catalogs = load_all(inputs["catalogs"])
        if not catalogs:
            raise TaskDataError("mergeDetections got no deepCoadd_det catalog")
        detections: dict[str, DetectionResult] = {}
        for k, cat in enumerate(catalogs):
            band = table_meta_band(cat) or f"band{k}"
            detections[band] = DetectionResult(
                decode_footprints(cat, "footprint_id"), strip_footprints(cat)
            )
        data_id = inputs.get("data_id") or self.metadata.get("data_id")
        wcs, pixel_arcsec = None, None
        if data_id and inputs.get("sky_map") is not None:
            wcs = patch_geometry(inputs["sky_map"], data_id).wcs
            pixel_arcsec = float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix)))) * 3600.0
        radius = max(
            cfg.min_new_peak_distance_arcsec / (pixel_arcsec or 1.0),
            cfg.min_new_peak_distance_fwhm * _widest_psf_fwhm(catalogs),
            1.0,
        )
        merged = merge_detections(
            detections, match_radius=radius, priority=cfg.priority_list, wcs=wcs
        )
        table = merged.peaks
        if cfg.min_bands > 1:
            table = table[np.asarray(table["n_bands"]) >= cfg.min_bands]
        shape = merged.labels.shape
        labels = merged.labels
        encode_footprints(table, labels, "parent_id")
        table.meta.update({"FP_NY": shape[0], "FP_NX": shape[1], "BANDS": ",".join(detections)})
        self.metadata.update(
            {"n_peaks": len(table), "bands": sorted(detections), "peak_merge_radius_px": radius}
        )
        return {"output_catalog": table}


def _widest_psf_fwhm(catalogs: list[Any]) -> float:
    """Largest ``PSF_FWHM`` (pixels) in the detection catalogs' meta (0 if none has one)."""
    widths = [float(c.meta["PSF_FWHM"]) for c in catalogs if "PSF_FWHM" in c.meta]
    return max((w for w in widths if np.isfinite(w)), default=0.0)
