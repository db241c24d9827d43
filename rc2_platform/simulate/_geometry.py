"""The simulator's only door to the instrument and sky-map packages.

Everything the simulator needs from :mod:`rc2_platform.instrument` and
:mod:`rc2_platform.skymap` goes through these few functions, so an API change there is
absorbed here.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from rc2_platform.instrument import (
    detector_linear_map,
    detector_regions,
    frame_id,
    load_camera,
    make_raw_header,
)
from rc2_platform.instrument import (
    detector_wcs as _detector_wcs,
)
from rc2_platform.simulate.plan import PlannedVisit
from rc2_platform.skymap import PatchInfo, RingsSkyMap, TractInfo, load_skymap

__all__ = [
    "DETECTOR_KEYS",
    "detector_updates",
    "only_detector_keys_differ",
    "block_patches",
    "detector_names",
    "detector_regions",
    "detector_wcs",
    "focal_plane_radius",
    "pixel_scale_arcsec",
    "radec_box",
    "raw_header",
    "science_detectors",
    "skymap",
]


def pixel_scale_arcsec() -> float:
    """Unbinned pixel scale of the camera."""
    return float(load_camera().pixel_scale_arcsec)


def science_detectors() -> list[int]:
    """Ids of all science detectors."""
    return list(load_camera().science_detector_ids)


def detector_names(ids: list[int]) -> dict[int, str]:
    """Detector id -> full name (``"1_46"``)."""
    camera = load_camera()
    return {i: camera.detector(i).full_name for i in ids}


def central_detectors(n: int) -> list[int]:
    """The ``n`` science detectors closest to the boresight, sorted by id."""
    camera = load_camera()
    dets = [camera.detector(i) for i in camera.science_detector_ids]
    dets.sort(key=lambda d: (np.hypot(d.x, d.y), d.id))
    return sorted(d.id for d in dets[:n])


def detector_wcs(ra: float, dec: float, rot: float, detector: int, binning: int) -> WCS:
    """WCS of a (binned) raw pixel grid."""
    return _detector_wcs(ra, dec, rot, detector, binning)


def focal_plane_radius(detector: int, binning: int) -> np.ndarray:
    """Angular distance (deg) of every binned pixel centre from the boresight, ``(ny, nx)``."""
    camera = load_camera()
    cd, crpix0 = detector_linear_map(0.0, detector, binning)
    ny, nx = camera.detector_ny // binning, camera.detector_nx // binning
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    xi = cd[0, 0] * (xx - crpix0[0]) + cd[0, 1] * (yy - crpix0[1])
    eta = cd[1, 0] * (xx - crpix0[0]) + cd[1, 1] * (yy - crpix0[1])
    return np.hypot(xi, eta)


def raw_header(visit: PlannedVisit, detector: int, binning: int) -> fits.Header:
    """The complete HSC primary header of one raw (from the instrument package)."""
    return make_raw_header(
        visit.visit,
        detector,
        visit.physical_filter,
        visit.mjd,
        visit.exptime,
        visit.ra,
        visit.dec,
        visit.rot,
        visit.object_name,
        binning=binning,
        darktime=visit.darktime,
    )


#: Cards of a raw header that depend on the detector (all others depend on the visit only).
DETECTOR_KEYS = frozenset(
    {
        "DETECTOR",
        "DET-ID",
        "T_CCDSN",
        "FRAMEID",
        "CRPIX1",
        "CRPIX2",
        "CD1_1",
        "CD1_2",
        "CD2_1",
        "CD2_2",
    }
)


def detector_updates(visit: PlannedVisit, det: int, binning: int = 1) -> dict[str, Any]:
    """Values of :data:`DETECTOR_KEYS` for one raw, computed as ``make_raw_header`` does."""
    d = load_camera().detector(det)
    cd, crpix0 = detector_linear_map(visit.rot, det, binning)
    return {
        "DETECTOR": d.full_name,
        "DET-ID": d.id,
        "T_CCDSN": f"{d.id + 1000:04d}",
        "FRAMEID": frame_id(visit.visit, d.id),
        "CRPIX1": float(crpix0[0]) + 1.0,
        "CRPIX2": float(crpix0[1]) + 1.0,
        "CD1_1": float(cd[0, 0]),
        "CD1_2": float(cd[0, 1]),
        "CD2_1": float(cd[1, 0]),
        "CD2_2": float(cd[1, 1]),
    }


def only_detector_keys_differ(visit: PlannedVisit, detectors: list[int], binning: int) -> bool:
    """True when only :data:`DETECTOR_KEYS` differ between two detectors' raw headers.

    The fast raw writers format one header per visit and re-render only those cards;
    this start-up check makes them fall back to a full header per file otherwise.
    """
    if len(detectors) < 2:
        return True
    camera = load_camera()
    other = next(
        (d for d in detectors if camera.detector(d).yaw != camera.detector(detectors[0]).yaw),
        detectors[1],
    )
    a, b = raw_header(visit, detectors[0], binning), raw_header(visit, other, binning)
    differ = {k for k in set(a.keys()) | set(b.keys()) if a.get(k) != b.get(k)}
    return differ <= DETECTOR_KEYS and set(a.keys()) == set(b.keys())


@functools.lru_cache(maxsize=4)
def skymap(config_name: str) -> RingsSkyMap:
    """The sky map of a ``config/skymaps.yaml`` entry (cached)."""
    return load_skymap(config_name)


def block_patches(tract: TractInfo, block: tuple[int, int, int, int]) -> list[PatchInfo]:
    """Patches ``(x0..x0+nx-1, y0..y0+ny-1)`` of a tract, in sequential-id order."""
    x0, y0, nx, ny = block
    return sorted(
        (tract.patch((x, y)) for y in range(y0, y0 + ny) for x in range(x0, x0 + nx)),
        key=lambda p: p.sequential_id,
    )


def block_centre(tract: TractInfo, patches: list[PatchInfo]) -> tuple[float, float]:
    """(ra, dec) of the centre of the union of the patches' inner boxes."""
    x = (min(p.inner_bbox.x_min for p in patches) + max(p.inner_bbox.x_max for p in patches)) / 2
    y = (min(p.inner_bbox.y_min for p in patches) + max(p.inner_bbox.y_max for p in patches)) / 2
    ra, dec = tract.wcs.all_pix2world([[x - 0.5, y - 0.5]], 0)[0]
    return float(ra) % 360.0, float(dec)


def radec_box(
    tract: TractInfo, patches: list[PatchInfo] | None, margin_deg: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    """RA and Dec ranges (deg) enclosing the patches' outer boxes (or the tract) + margin.

    RA values may exceed 360 or be negative (unwrapped around the tract centre).
    """
    boxes = [p.outer_bbox for p in patches] if patches else [tract.bbox]
    x = np.array([[b.x_min, b.x_max] for b in boxes], dtype=float).ravel() - 0.5
    y = np.array([[b.y_min, b.y_max] for b in boxes], dtype=float).ravel() - 0.5
    xx, yy = np.meshgrid(np.linspace(x.min(), x.max(), 5), np.linspace(y.min(), y.max(), 5))
    ra, dec = tract.wcs.all_pix2world(xx.ravel(), yy.ravel(), 0)
    ra = (ra - tract.ra + 180.0) % 360.0 - 180.0 + tract.ra
    cos_dec = max(np.cos(np.radians(np.abs(dec).max() + margin_deg)), 1e-3)
    return (
        (float(ra.min() - margin_deg / cos_dec), float(ra.max() + margin_deg / cos_dec)),
        (float(dec.min() - margin_deg), float(dec.max() + margin_deg)),
    )
