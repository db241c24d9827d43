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
