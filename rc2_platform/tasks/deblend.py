"""deblend: split the merged footprints of one patch into children, per band."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from rc2_platform.pipeline import Input, Output, PipelineTask, TaskConfig
from rc2_platform.tasks._common import EXPOSURE, PATCH, PATCH_BAND, SOURCE_CATALOG
from rc2_platform.tasks._helpers import (
    as_exposure,
    band_of,
    deblend_to_table,
    decode_footprints,
    header_of,
    load,
    shape2,
    strip_footprints,
)


class DeblendCoaddSourcesConfig(TaskConfig):
    """Configuration of :class:`DeblendCoaddSourcesTask`."""

    max_footprint_area: int = Field(
        1_000_000, ge=1, description="Footprints larger than this (pixels) are not deblended."
    )
    max_number_of_peaks: int = Field(
        0, ge=0, description="Deblend at most this many peaks per footprint (0: no limit)."
    )
    propagate_all_peaks: bool = Field(
        False, description="Keep peaks that the deblender could not model as children."
    )


class DeblendCoaddSourcesTask(PipelineTask[DeblendCoaddSourcesConfig]):
    """Deblend ``deepCoadd_mergeDet`` on one band's coadd -> ``deepCoadd_deblendedFlux``."""

    default_label = "deblend"
    dimensions = PATCH_BAND
    ConfigClass = DeblendCoaddSourcesConfig

    peaks = Input(
        dataset_type_name="deepCoadd_mergeDet",
        dimensions=PATCH,
        storage_class=SOURCE_CATALOG,
        doc="Merged detections of all bands.",
    )
    coadd = Input(
        dataset_type_name="deepCoadd",
        dimensions=PATCH_BAND,
        storage_class=EXPOSURE,
        doc="The band's coadd.",
    )
    deblended_flux = Output(
        dataset_type_name="deepCoadd_deblendedFlux",
        dimensions=PATCH_BAND,
        storage_class=SOURCE_CATALOG,
        doc="Parents and deblended children with their footprints.",
    )

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Return ``{"deblended_flux": Table}``: one row per merged peak (child).

        The SDSS-style symmetric-template split of
        :func:`~rc2_platform.tasks.algorithms.deblend` on this band's coadd: each child's
        template is ``min(image, image mirrored through its peak)`` and the parent's
        pixels are shared in proportion. Parents larger than ``max_footprint_area``
        pixels, or with more than ``max_number_of_peaks`` peaks (when > 0), are not
        split: their brightest-listed peak gets all the flux and the other peaks keep
        empty footprints (``propagate_all_peaks`` keeps them in the table, otherwise
        they are dropped). Heavy footprints are the ``fp_y``, ``fp_x``, ``fp_value``
        columns. Meta: ``BAND``, ``PSF_FWHM``.
        """
        from rc2_platform.tasks.algorithms import MergedDetections, deblend

        cfg = self.config
        peaks = load(inputs["peaks"])
        coadd = as_exposure(load(inputs["coadd"]), "deepCoadd")
        labels = decode_footprints(peaks, "parent_id", shape2(coadd))
        catalog = strip_footprints(peaks)
        catalog, labels, skipped = _limit_parents(
            catalog,
            labels,
            cfg.max_footprint_area,
            cfg.max_number_of_peaks,
            cfg.propagate_all_peaks,
        )
        result = deblend(
            np.asarray(coadd.image, dtype=np.float64), MergedDetections(labels, catalog)
        )
        table = deblend_to_table(result)
        header = header_of(coadd)
        table.meta.update({"BAND": band_of(header), "PSF_FWHM": header.get("PSF_FWHM", np.nan)})
        self.metadata.update({"n_children": len(table), "n_parents_not_split": skipped})
        return {"deblended_flux": table}


def _limit_parents(
    catalog: Any, labels: np.ndarray, max_area: int, max_peaks: int, keep_all: bool
) -> tuple[Any, np.ndarray, int]:
    """Keep one peak per parent that is too large or has too many peaks."""
    parent = np.asarray(catalog["parent_id"], dtype=np.int64)
    if not len(parent):
        return catalog, labels, 0
    area = np.bincount(labels.ravel(), minlength=int(parent.max()) + 1)
    counts = np.bincount(parent, minlength=len(area))
    too_big = (area > max_area) | ((counts > max_peaks) if max_peaks > 0 else False)
    first = np.zeros(len(parent), dtype=bool)
    _, idx = np.unique(parent, return_index=True)
    first[idx] = True
    drop = too_big[parent] & ~first
    if not drop.any():
        return catalog, labels, 0
    if keep_all:
        catalog = catalog.copy()
        catalog["parent_id"][drop] = 0  # no footprint: measured on the plain image
        return catalog, labels, int(too_big.sum())
    return catalog[~drop], labels, int(too_big.sum())
