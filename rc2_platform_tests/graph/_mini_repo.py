"""A hand-placed mini repository for QuantumGraph builder tests (registry calls only).

Geometry (degrees, near ra = dec = 0, where small lon/lat boxes are nearly flat):

* one tract (skymap ``rings``, tract 0) and a 2x2 grid of patches of 0.9 deg with
  0.1 deg gaps: patch 0 at (0.05, 0.05), 1 at (1.05, 0.05), 2 at (0.05, 1.05),
  3 at (1.05, 1.05);
* three visits (== exposures) of three detectors each; ``VDR`` gives each detector's
  box, chosen so the overlaps are known (visit 101 detector 2 overlaps nothing).

Calibrations live in the CALIBRATION collection ``HSC/calib``: bias and dark per
detector valid 2019, except that detector 2 also has an *old* dark valid only in 2018
(``dark_old``); flats per (filter, detector), except that HSC-G detector 0 has two
flats (before / from 2019-03-06) and the HSC-R detector 1 flat is left out when
``missing_flat`` is true.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lsst.sphgeom as sg
from astropy.time import Time

from rc2_platform.core.timespan import time_to_nsec
from rc2_platform.pipeline import Pipeline
from rc2_platform.registry import CollectionType, DatasetRef, Registry, Timespan

PATCHES = {0: (0.05, 0.05), 1: (1.05, 0.05), 2: (0.05, 1.05), 3: (1.05, 1.05)}
PATCH_SIZE = 0.9
#: visit -> (physical_filter, band, start time)
VISITS = {
    100: ("HSC-G", "g", "2019-03-05T10:00:00"),
    101: ("HSC-G", "g", "2019-03-06T10:00:00"),
    200: ("HSC-R", "r", "2019-03-05T11:00:00"),
}
#: (visit, detector) -> (ra, dec, width) of the detector's square region
VDR = {
    (100, 0): (0.2, 0.2, 0.3),
    (100, 1): (0.8, 0.2, 0.4),
    (100, 2): (1.3, 1.3, 0.3),
    (101, 0): (0.2, 1.2, 0.3),
    (101, 1): (1.2, 0.2, 0.3),
    (101, 2): (5.0, 5.0, 0.3),
    (200, 0): (0.5, 0.5, 0.8),
    (200, 1): (0.3, 0.3, 0.2),
    (200, 2): (1.5, 1.5, 0.2),
}
DETECTORS = (0, 1, 2)
SKYMAP = "rings"
RAW_RUN = "HSC/raw/all"
OVERRIDE_RUN = "HSC/raw/override"
CALIB = "HSC/calib"
CALIB_RUN = "HSC/calib/run"
AUX_RUN = "aux"  # skyMap, refcat shards, bright-object masks
INPUTS = [RAW_RUN, CALIB, AUX_RUN]


def box(ra: float, dec: float, w: float) -> sg.ConvexPolygon:
    """A small spherical quadrilateral with lower-left corner (ra, dec)."""
    corners = [(ra, dec), (ra + w, dec), (ra + w, dec + w), (ra, dec + w)]
    return sg.ConvexPolygon([sg.UnitVector3d(sg.LonLat.fromDegrees(a, b)) for a, b in corners])


def nsec(iso: str) -> int:
    """TAI nanoseconds of an ISO time."""
    return time_to_nsec(Time(iso, scale="tai"))


def expected_overlaps() -> set[tuple[int, int, int]]:
    """(visit, detector, patch) overlaps computed from the boxes as plain intervals."""
    out = set()
    for (v, d), (ra, dec, w) in VDR.items():
        for p, (pra, pdec) in PATCHES.items():
            if (
                ra < pra + PATCH_SIZE
                and pra < ra + w
                and dec < pdec + PATCH_SIZE
                and pdec < dec + w
            ):
                out.add((v, d, p))
    return out


def htm7_of(region: sg.Region) -> set[int]:
    """HTM level-7 pixels truly overlapping ``region`` (computed independently)."""
    pix = sg.HtmPixelization(7)
    return {
        i
        for begin, end in pix.envelope(region).ranges()
        for i in range(begin, end)
        if region.overlaps(pix.pixel(i)) is not False
    }


@dataclass
class MiniRepo:
    """Handles to what the fixture inserted."""

    registry: Registry
    pipeline: Pipeline
    raws: dict[tuple[int, int], DatasetRef] = field(default_factory=dict)
    override_raw: DatasetRef | None = None
    darks: dict[str, DatasetRef] = field(default_factory=dict)
    flats: dict[str, DatasetRef] = field(default_factory=dict)
    shards: set[int] = field(default_factory=set)


def _dimension_records(reg: Registry) -> None:
    reg.insert_dimension_records("instrument", [{"instrument": "HSC"}])
    reg.insert_dimension_records("band", [{"band": "g"}, {"band": "r"}])
    reg.insert_dimension_records(
        "physical_filter",
        [
            {"instrument": "HSC", "physical_filter": "HSC-G", "band": "g"},
            {"instrument": "HSC", "physical_filter": "HSC-R", "band": "r"},
        ],
    )
    reg.insert_dimension_records(
        "detector", [{"instrument": "HSC", "detector": d} for d in DETECTORS]
    )
    reg.insert_dimension_records(
        "day_obs", [{"instrument": "HSC", "day_obs": d} for d in (20190305, 20190306)]
    )
    common: list[dict[str, Any]] = []
    for v, (pf, _band, start) in VISITS.items():
        t0 = nsec(start)
        common.append(
            {
                "instrument": "HSC",
                "physical_filter": pf,
                "day_obs": int(start[:10].replace("-", "")),
                "exposure_time": 30.0,
                "timespan": Timespan(t0, t0 + 30 * 10**9),
                "id": v,
            }
        )
    reg.insert_dimension_records(
        "exposure", [{**{k: c[k] for k in c if k != "id"}, "exposure": c["id"]} for c in common]
    )
    reg.insert_dimension_records(
        "visit",
        [
            {**{k: c[k] for k in c if k != "id"}, "visit": c["id"], "region": box(-0.5, -0.5, 6.5)}
            for c in common
        ],
    )
    reg.insert_dimension_records(
        "visit_definition", [{"instrument": "HSC", "exposure": v, "visit": v} for v in VISITS]
    )
    reg.insert_dimension_records(
        "visit_detector_region",
        [
            {"instrument": "HSC", "visit": v, "detector": d, "region": box(*b)}
            for (v, d), b in VDR.items()
        ],
    )
    reg.insert_dimension_records("skymap", [{"skymap": SKYMAP}])
    reg.insert_dimension_records(
        "tract", [{"skymap": SKYMAP, "tract": 0, "region": box(-0.5, -0.5, 3)}]
    )
    reg.insert_dimension_records(
        "patch",
        [
            {"skymap": SKYMAP, "tract": 0, "patch": p, "region": box(ra, dec, PATCH_SIZE)}
            for p, (ra, dec) in PATCHES.items()
        ],
    )


def _certify(reg: Registry, repo: MiniRepo, missing_flat: bool) -> None:
    year = Timespan(nsec("2019-01-01T00:00:00"), nsec("2020-01-01T00:00:00"))
    old = Timespan(nsec("2018-01-01T00:00:00"), nsec("2019-01-01T00:00:00"))
    split = nsec("2019-03-06T00:00:00")
    dets = [{"instrument": "HSC", "detector": d} for d in DETECTORS]
    for name in ("bias", "dark"):
        reg.certify(CALIB, reg.insert_datasets(name, dets, CALIB_RUN), year)
    # The old dark of detector 2 lives in its own run (same data ID) and is valid in 2018.
    reg.register_run(CALIB_RUN + "/old")
    (dark_old,) = reg.insert_datasets("dark", dets[2:], CALIB_RUN + "/old")
    reg.certify(CALIB, [dark_old], old)
    repo.darks["old"] = dark_old
    flats = []
    for pf in ("HSC-G", "HSC-R"):
        for d in DETECTORS:
            if (pf, d) == ("HSC-R", 1) and missing_flat:
                continue
            flats.append({"instrument": "HSC", "physical_filter": pf, "detector": d})
    refs = reg.insert_datasets("flat", flats, CALIB_RUN)
    g0 = [r for r in refs if r.data_id["physical_filter"] == "HSC-G" and r.data_id["detector"] == 0]
    reg.certify(CALIB, [r for r in refs if r not in g0], year)
    reg.certify(CALIB, g0, Timespan(year.begin_nsec, split))
    reg.register_run(CALIB_RUN + "/late")
    late = reg.insert_datasets("flat", [g0[0].data_id], CALIB_RUN + "/late")
    reg.certify(CALIB, late, Timespan(split, year.end_nsec))
    repo.flats["early"], repo.flats["late"] = g0[0], late[0]


def build_mini_repo(url: str, *, missing_flat: bool = True) -> MiniRepo:
    """Create the registry at ``url`` and fill it (see the module docstring)."""
    return fill_mini_repo(Registry.create(url), missing_flat=missing_flat)


def fill_mini_repo(reg: Registry, *, missing_flat: bool = True) -> MiniRepo:
    """Fill an empty registry (see the module docstring)."""
    pipeline = Pipeline.from_yaml("DRP-RC2")
    repo = MiniRepo(reg, pipeline)
    _dimension_records(reg)
    graph = pipeline.to_graph()
    for name in graph.overall_inputs:
        reg.register_dataset_type(graph.dataset_types[name].dataset_type)
    for run in (RAW_RUN, OVERRIDE_RUN, CALIB_RUN, AUX_RUN):
        reg.register_run(run)
    reg.register_collection(CALIB, CollectionType.CALIBRATION)
    raws = reg.insert_datasets(
        "raw", [{"instrument": "HSC", "exposure": v, "detector": d} for v, d in VDR], RAW_RUN
    )
    repo.raws = {(int(r.data_id["exposure"]), int(r.data_id["detector"])): r for r in raws}
    (repo.override_raw,) = reg.insert_datasets(
        "raw", [{"instrument": "HSC", "exposure": 100, "detector": 0}], OVERRIDE_RUN
    )
    _certify(reg, repo, missing_flat)
    reg.insert_datasets("skyMap", [{"skymap": SKYMAP}], AUX_RUN)
    reg.insert_datasets(
        "brightObjectMask", [{"skymap": SKYMAP, "tract": 0, "patch": p} for p in PATCHES], AUX_RUN
    )
    repo.shards = htm7_of(box(-0.5, -0.5, 3))
    reg.insert_datasets("synth_refcat", [{"htm7": p} for p in sorted(repo.shards)], AUX_RUN)
    return repo
