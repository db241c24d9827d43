"""Detector footprints of many exposures at once, and tract-overlap selection."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import lsst.sphgeom as sphgeom
import numpy as np
from lsst.sphgeom import Region

from rc2_platform.butler import Butler
from rc2_platform.errors import IngestError
from rc2_platform.instrument import detector_regions

#: (tracking ra, tracking dec, rotator angle) of an exposure, degrees.
Pointing = tuple[float, float, float]


def detector_footprints(
    pointings: Mapping[int, Pointing], wanted: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], sphgeom.ConvexPolygon]:
    """Sky polygon of every ``(exposure, detector)`` in ``wanted``, vectorized per exposure set."""
    pairs = sorted(set(wanted))
    if not pairs:
        return {}
    exposures = sorted({e for e, _ in pairs})
    detectors = sorted({d for _, d in pairs})
    arr = np.array([pointings[e] for e in exposures], dtype=np.float64)
    fp = detector_regions(arr[:, 0], arr[:, 1], arr[:, 2], detectors)
    e_index = {e: i for i, e in enumerate(exposures)}
    d_index = {d: j for j, d in enumerate(detectors)}
    return {(e, d): fp.polygon(e_index[e], d_index[d]) for e, d in pairs}


def only_skymap(butler: Butler, skymap: str | None) -> str:
    """``skymap`` if given, else the single registered sky map (IngestError otherwise)."""
    if skymap is not None:
        return skymap
    names = sorted(k for (k,) in butler.registry.query_record_keys("skymap", ["skymap"]))
    if len(names) != 1:
        raise IngestError(
            f"selecting by tract needs a sky map; registered sky maps: {names or 'none'}; "
            "pass skymap=... (--skymap) or register one with `rc2 register-skymap`"
        )
    return names[0]


def tract_regions(butler: Butler, skymap: str, tracts: Sequence[int]) -> dict[int, Region]:
    """Regions of ``tracts`` of ``skymap`` from the registry (IngestError if one is missing)."""
    wanted = sorted({int(t) for t in tracts})
    records = butler.registry.query_dimension_records(
        "tract", where="skymap = :sm AND tract IN (:tracts)", bind={"sm": skymap, "tracts": wanted}
    )
    out = {int(r["tract"]): r["region"] for r in records}
    missing = sorted(set(int(t) for t in tracts) - set(out))
    if missing:
        raise IngestError(
            f"tract(s) {missing} of sky map {skymap!r} are not registered; register the sky "
            "map first (`rc2 register-skymap`)"
        )
    return out


def overlaps_any(region: Region, others: Iterable[Region]) -> bool:
    """Whether ``region`` may overlap one of ``others`` (undecidable counts as overlap)."""
    return any(not (region.relate(other) & sphgeom.DISJOINT) for other in others)
