"""The HSC-like instrument: camera layout, filters, detector WCS, header translation.

Public API::

    load_camera() -> Camera              # detectors, filters, registry records
    HyperSuprimeCam                      # alias of Camera (instrument class name)
    detector_wcs(ra, dec, rot_deg, detector_id, binning=1) -> astropy WCS
    detector_regions(ra, dec, rot_deg, detector_ids=None) -> DetectorFootprints
    translate_header(header, filename=None) -> ObservationRecord
    make_raw_header(exposure_id, detector_id, physical_filter, mjd_start, exptime,
                    ra, dec, rot, object_name, binning=1, ...) -> astropy Header
"""

from __future__ import annotations

from rc2_platform.instrument.camera import (
    Camera,
    CameraConfig,
    Detector,
    DetectorConfig,
    FilterConfig,
    load_camera,
)
from rc2_platform.instrument.headers import frame_id, make_raw_header
from rc2_platform.instrument.translator import (
    ObservationRecord,
    tai_nsec_from_utc,
    translate_header,
)
from rc2_platform.instrument.wcs import (
    DetectorFootprints,
    detector_linear_map,
    detector_regions,
    detector_wcs,
)

#: The instrument class named by the ``instrument`` record's ``class_name``.
HyperSuprimeCam = Camera

__all__ = [
    "Camera",
    "CameraConfig",
    "Detector",
    "DetectorConfig",
    "DetectorFootprints",
    "FilterConfig",
    "HyperSuprimeCam",
    "ObservationRecord",
    "detector_linear_map",
    "detector_regions",
    "detector_wcs",
    "frame_id",
    "load_camera",
    "make_raw_header",
    "tai_nsec_from_utc",
    "translate_header",
]
