"""Registry contents shared by the registry and butler tests, placed by hand."""

from __future__ import annotations

import lsst.sphgeom as sg

from rc2_platform.registry import Registry, Timespan


def box(ra: float, dec: float, w: float) -> sg.ConvexPolygon:
    """A small spherical quadrilateral with lower-left corner (ra, dec) in degrees."""
    corners = [(ra, dec), (ra + w, dec), (ra + w, dec + w), (ra, dec + w)]
    return sg.ConvexPolygon([sg.UnitVector3d(sg.LonLat.fromDegrees(a, b)) for a, b in corners])


def insert_two_visits(reg: Registry) -> None:
    """Instrument HSC, bands g/r, detectors 0/1, visit 1 (g, ra 0-1) and visit 2 (r, ra 10-11)."""
    reg.insert_dimension_records("instrument", [{"instrument": "HSC"}])
    reg.insert_dimension_records("band", [{"band": "g"}, {"band": "r"}])
    reg.insert_dimension_records(
        "physical_filter",
        [
            {"instrument": "HSC", "physical_filter": "HSC-G", "band": "g"},
            {"instrument": "HSC", "physical_filter": "HSC-R", "band": "r"},
        ],
    )
    reg.insert_dimension_records("detector", [{"instrument": "HSC", "detector": d} for d in (0, 1)])
    reg.insert_dimension_records("day_obs", [{"instrument": "HSC", "day_obs": 20200101}])
    reg.insert_dimension_records(
        "visit",
        [
            {
                "instrument": "HSC",
                "visit": v,
                "physical_filter": f,
                "day_obs": 20200101,
                "exposure_time": 30.0,
                "region": box(ra, 0, 1),
                "timespan": Timespan(v * 100, v * 100 + 30),
            }
            for v, f, ra in ((1, "HSC-G", 0.0), (2, "HSC-R", 10.0))
        ],
    )


def insert_visits_and_patches(reg: Registry) -> None:
    """Two visits of 2 detectors each and a 1-tract, 2-patch sky map, placed by hand.

    visit 1 covers ra 0-1 (detectors: ra 0-0.5 and 0.5-1); visit 2 covers ra 10-11.
    patch 0 covers ra 0.2-0.4, patch 1 covers ra 10.6-10.8: so detector 0 of visit 1
    overlaps only patch 0, detector 1 of visit 2 overlaps only patch 1.
    """
    insert_two_visits(reg)
    reg.insert_dimension_records(
        "visit_detector_region",
        [
            {"instrument": "HSC", "visit": v, "detector": d, "region": box(ra + 0.5 * d, 0, 0.5)}
            for v, ra in ((1, 0.0), (2, 10.0))
            for d in (0, 1)
        ],
    )
    reg.insert_dimension_records("skymap", [{"skymap": "rings"}])
    reg.insert_dimension_records(
        "tract", [{"skymap": "rings", "tract": 9615, "region": box(-1, -1, 13)}]
    )
    reg.insert_dimension_records(
        "patch",
        [
            {"skymap": "rings", "tract": 9615, "patch": 0, "region": box(0.2, 0.1, 0.2)},
            {"skymap": "rings", "tract": 9615, "patch": 1, "region": box(10.6, 0.1, 0.2)},
        ],
    )
