"""mergeMeasurements: choose the reference band of every object of one patch."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from rc2_platform.pipeline import Input, Output, PipelineTask, TaskConfig
from rc2_platform.tasks._common import PATCH, PATCH_BAND, SOURCE_CATALOG
from rc2_platform.tasks._helpers import load_all, table_meta_band


class MergeMeasurementsConfig(TaskConfig):
    """Configuration of :class:`MergeMeasurementsTask`."""

    priority_list: tuple[str, ...] = Field(
        ("i", "r", "z", "y", "g"), description="Bands in order of priority as reference band."
    )
    min_sn: float = Field(
        10.0, gt=0, description="Signal-to-noise a band needs to be chosen as reference."
    )
    flux_column: str = Field("psf_flux", description="Flux column used for the S/N cut.")


class MergeMeasurementsTask(PipelineTask[MergeMeasurementsConfig]):
    """Merge ``deepCoadd_meas`` of all bands into the ``deepCoadd_ref`` catalog."""

    default_label = "mergeMeasurements"
    dimensions = PATCH
    ConfigClass = MergeMeasurementsConfig

    catalogs = Input(
        dataset_type_name="deepCoadd_meas",
        dimensions=PATCH_BAND,
        storage_class=SOURCE_CATALOG,
        multiple=True,
        doc="Measurements of each band.",
    )
    merged_catalog = Output(
        dataset_type_name="deepCoadd_ref",
        dimensions=PATCH,
        storage_class=SOURCE_CATALOG,
        doc="One row per object with its reference band.",
    )

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Return ``{"merged_catalog": Table}``: the reference-band row of every object.

        The band of each input is its ``BAND`` meta or ``band`` column (input order does
        not matter). The reference band is the first of ``priority_list`` where the
        object has ``flux_column`` S/N >= ``min_sn`` and no edge/bad/centroid flag, else
        the band of highest S/N (:func:`~rc2_platform.tasks.algorithms.merge_measurements`).
        Adds ``ref_band`` and ``ref_snr``.

        Raises
        ------
        TaskDataError
            If the bands' catalogs do not hold the same object ids in the same order
            (they were not measured on the same merged detections).
        """
        from rc2_platform.tasks.algorithms import TaskDataError, merge_measurements

        cfg = self.config
        tables = load_all(inputs["catalogs"])
        if not tables:
            raise TaskDataError("mergeMeasurements got no deepCoadd_meas catalog")
        by_band = {}
        for k, table in enumerate(tables):
            band = table_meta_band(table) or f"band{k}"
            table = table.copy()
            if cfg.flux_column != "psf_flux":
                if cfg.flux_column not in table.colnames:
                    raise TaskDataError(
                        f"flux_column {cfg.flux_column!r} is not a deepCoadd_meas column"
                    )
                with np.errstate(divide="ignore", invalid="ignore"):
                    table["snr"] = np.asarray(table[cfg.flux_column], float) / np.asarray(
                        table[f"{cfg.flux_column}_err"], float
                    )
            by_band[band] = table
        _check_same_ids(by_band, self.metadata.get("data_id") or {})
        merged = merge_measurements(by_band, priority=cfg.priority_list, min_snr=cfg.min_sn)
        merged.meta = {"BANDS": ",".join(sorted(by_band))}
        self.metadata.update({"n_objects": len(merged), "bands": sorted(by_band)})
        return {"merged_catalog": merged}


def _check_same_ids(by_band: dict[str, Any], data_id: dict[str, Any]) -> None:
    """Raise a :class:`TaskDataError` naming the bands whose object ids differ."""
    from rc2_platform.tasks.algorithms import TaskDataError

    bands = sorted(by_band)
    ref_band = bands[0]
    ref = np.asarray(by_band[ref_band]["id"], dtype=np.int64)
    for band in bands[1:]:
        ids = np.asarray(by_band[band]["id"], dtype=np.int64)
        if np.array_equal(ids, ref):
            continue
        only_ref = np.setdiff1d(ref, ids)
        only_band = np.setdiff1d(ids, ref)
        where = " ".join(f"{k} {data_id[k]}" for k in ("tract", "patch") if k in data_id)
        raise TaskDataError(
            f"mismatched source ids at the merge step{' of ' + where if where else ''}: "
            f"deepCoadd_meas of band {band!r} has {len(ids)} objects, band {ref_band!r} "
            f"{len(ref)}; {len(only_ref)} id(s) only in {ref_band!r} (e.g. "
            f"{only_ref[:3].tolist()}), {len(only_band)} only in {band!r} (e.g. "
            f"{only_band[:3].tolist()})"
            + ("" if len(only_ref) or len(only_band) else ", same ids in another order")
            + "; the bands were not measured on the same deepCoadd_mergeDet"
        )
