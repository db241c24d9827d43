"""``define_visits``: one visit per exposure, with detector regions and their overlaps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lsst.sphgeom as sphgeom

from rc2_platform.butler import Butler
from rc2_platform.core import DatasetRef
from rc2_platform.errors import IngestError
from rc2_platform.ingest._common import RAW, IngestResult, timed
from rc2_platform.ingest._geometry import (
    Pointing,
    detector_footprints,
    only_skymap,
    overlaps_any,
    tract_regions,
)
from rc2_platform.ingest.raws import read_raw
from rc2_platform.instrument import load_camera

__all__ = ["define_visits"]

#: Visits per registry transaction.
VISIT_BATCH = 500


def _raws_by_exposure(butler: Butler, raw_run: str) -> dict[int, list[DatasetRef]]:
    out: dict[int, list[DatasetRef]] = {}
    try:
        refs = butler.registry.query_datasets(RAW, [raw_run])
    except KeyError:  # MissingDatasetTypeError / MissingCollectionError: nothing ingested
        return out
    for ref in refs:
        out.setdefault(int(ref.data_id["exposure"]), []).append(ref)
    return out


def _pointings(
    butler: Butler, exposures: Sequence[int], raws: dict[int, list[DatasetRef]]
) -> tuple[dict[int, Pointing], list[tuple[str, str]]]:
    """Pointing of each exposure from the header of one of its raws (rotator angle is not
    a registry column)."""
    first = {e: raws[e][0] for e in exposures}
    records = butler.datastore_records(first.values())
    out: dict[int, Pointing] = {}
    failed = []
    for e, ref in first.items():
        rec = records.get(ref.id)
        info = read_raw(butler.datastore.absolute(rec)) if rec is not None else None
        if info is None or info.obs is None:
            reason = info.error if info is not None else "the raw has no file record"
            failed.append((f"exposure {e}", f"cannot read the pointing of exposure {e}: {reason}"))
            continue
        o = info.obs
        out[e] = (o.tracking_ra, o.tracking_dec, o.rotation_angle)
    return out, failed


def _visit_record(exp: dict[str, Any], region: sphgeom.Region) -> dict[str, Any]:
    return {
        "instrument": exp["instrument"],
        "visit": exp["exposure"],
        "physical_filter": exp["physical_filter"],
        "day_obs": exp["day_obs"],
        "visit_name": exp["obs_id"],
        "exposure_time": exp["exposure_time"],
        "target_name": exp["target_name"],
        "timespan": exp["timespan"],
        "region": region,
    }


def _hull(polys: Sequence[sphgeom.ConvexPolygon]) -> sphgeom.ConvexPolygon:
    return sphgeom.ConvexPolygon.convexHull([v for p in polys for v in p.getVertices()])


def _insert_batch(
    butler: Butler,
    exposures: Sequence[dict[str, Any]],
    polys: dict[tuple[int, int], sphgeom.ConvexPolygon],
    detectors: dict[int, list[int]],
) -> int:
    visits, defs, vdrs = [], [], []
    for exp in exposures:
        e, inst = int(exp["exposure"]), exp["instrument"]
        mine = [polys[(e, d)] for d in detectors[e]]
        visits.append(_visit_record(exp, _hull(mine)))
        defs.append({"instrument": inst, "exposure": e, "visit": e})
        vdrs += [
            {"instrument": inst, "visit": e, "detector": d, "region": p}
            for d, p in zip(detectors[e], mine, strict=True)
        ]
    reg = butler.registry
    with reg.transaction():
        rows = reg.insert_dimension_records("visit", visits)
        rows += reg.insert_dimension_records("visit_definition", defs)
        rows += reg.insert_dimension_records("visit_detector_region", vdrs)
    return rows


def define_visits(
    butler: Butler,
    *,
    where: str = "",
    raw_run: str = "HSC/raw/all",
    tracts: Sequence[int] | None = None,
    bands: Sequence[str] | None = None,
    skymap: str | None = None,
) -> IngestResult:
    """Define one visit per exposure (HSC: visit id = exposure id).

    Each visit gets a record with the exposure's time span and a region (convex hull
    of its detectors), a ``visit_definition`` row, and a ``visit_detector_region`` per
    raw detector; the registry materializes their overlaps with HTM7 pixels, tracts
    and patches. Exposures that already have a visit are skipped.

    Parameters
    ----------
    butler : Butler
        The repository.
    where : str
        Where-expression on exposures, e.g. ``"exposure > 1000"``.
    raw_run : str
        Collection of the raws (their detectors and headers define the regions).
    tracts, bands : sequence, optional
        Only visits of these bands overlapping these tracts.
    skymap : str, optional
        Sky map of ``tracts``; default: the only registered one.

    Returns
    -------
    IngestResult
        ``ingested`` = new visits.
    """
    result = IngestResult("visits", collection="")
    with timed(result):
        reg = butler.registry
        exposures = reg.query_dimension_records("exposure", where=where)
        if bands is not None:
            to_band = load_camera().filter_to_band
            exposures = [x for x in exposures if to_band.get(x["physical_filter"]) in set(bands)]
        existing = {int(v["visit"]) for v in reg.query_dimension_records("visit")}
        todo = [x for x in exposures if int(x["exposure"]) not in existing]
        result.skipped = len(exposures) - len(todo)
        raws = _raws_by_exposure(butler, raw_run)
        for x in todo:
            if int(x["exposure"]) not in raws:
                result.failed.append(
                    (
                        f"exposure {x['exposure']}",
                        f"exposure {x['exposure']} has no raw in {raw_run}",
                    )
                )
        todo = [x for x in todo if int(x["exposure"]) in raws]
        pointings, failed = _pointings(butler, [int(x["exposure"]) for x in todo], raws)
        result.failed += failed
        todo = [x for x in todo if int(x["exposure"]) in pointings]
        detectors = {
            int(x["exposure"]): sorted(int(r.data_id["detector"]) for r in raws[int(x["exposure"])])
            for x in todo
        }
        polys = detector_footprints(pointings, [(e, d) for e, ds in detectors.items() for d in ds])
        if tracts is not None and todo:
            regions = list(tract_regions(butler, only_skymap(butler, skymap), tracts).values())
            todo = [
                x
                for x in todo
                if any(
                    overlaps_any(polys[(int(x["exposure"]), d)], regions)
                    for d in detectors[int(x["exposure"])]
                )
            ]
        for i in range(0, len(todo), VISIT_BATCH):
            batch = todo[i : i + VISIT_BATCH]
            try:
                result.rows += _insert_batch(butler, batch, polys, detectors)
                result.ingested += len(batch)
            except IngestError as exc:
                result.failed += [(f"exposure {x['exposure']}", str(exc)) for x in batch]
        if result.rows >= 10_000:
            reg.analyze_elements(["visit", "visit_detector_region"])
    return result
