"""Sky geometry: spherical polygons, their encoding, HTM pixel ranges, TAN projection.

Built on :mod:`lsst.sphgeom` (regions) and numpy (vectorized projection).
"""

from __future__ import annotations

from rc2_platform.geometry.projection import (
    tan_deproject,
    tan_deproject_radec,
    tan_project,
    tangent_basis,
)
from rc2_platform.geometry.regions import (
    HTM_LEVEL,
    decode_region,
    encode_quads,
    encode_region,
    htm7_ids,
    htm7_ranges,
    htm_ranges,
    lonlat_to_vectors,
    polygon_from_radec,
    region_corners_radec,
    unit_vectors_to_radec,
)

__all__ = [
    "HTM_LEVEL",
    "decode_region",
    "encode_quads",
    "encode_region",
    "htm7_ids",
    "htm7_ranges",
    "htm_ranges",
    "lonlat_to_vectors",
    "polygon_from_radec",
    "region_corners_radec",
    "tan_deproject",
    "tan_deproject_radec",
    "tan_project",
    "tangent_basis",
    "unit_vectors_to_radec",
]
