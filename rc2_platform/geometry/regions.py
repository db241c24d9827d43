"""Spherical regions: polygons from (ra, dec) corners, encoding, HTM pixel ranges.

Regions are :mod:`lsst.sphgeom` objects. The registry stores them as the bytes of
``region.encode()``; :func:`decode_region` turns them back into objects. For bulk work
(hundreds of thousands of quadrilaterals, e.g. sky-map patches or detector footprints)
:func:`encode_quads` writes the same byte format straight from numpy arrays, without
building one Python object per polygon.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import lsst.sphgeom as sphgeom
import numpy as np
import numpy.typing as npt

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
    "unit_vectors_to_radec",
]

#: The HTM level of the ``htm7`` dimension.
HTM_LEVEL = 7

#: sphgeom's type code for ConvexPolygon in its binary encoding.
_POLYGON_TYPE_CODE = ord("p")
_QUAD_BYTES = 1 + 4 * 3 * 8

FloatArray = npt.NDArray[np.float64]


def lonlat_to_vectors(ra_deg: npt.ArrayLike, dec_deg: npt.ArrayLike) -> FloatArray:
    """Convert (ra, dec) in degrees to unit vectors.

    Parameters
    ----------
    ra_deg, dec_deg : array_like
        Right ascension and declination in degrees; any broadcast-compatible shapes.

    Returns
    -------
    vectors : `numpy.ndarray`
        Array of shape ``broadcast_shape + (3,)`` with (x, y, z) unit vectors.
    """
    ra = np.radians(np.asarray(ra_deg, dtype=np.float64))
    dec = np.radians(np.asarray(dec_deg, dtype=np.float64))
    ra, dec = np.broadcast_arrays(ra, dec)
    cos_dec = np.cos(dec)
    return np.stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)], axis=-1)


def unit_vectors_to_radec(vectors: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Convert ``(..., 3)`` vectors (need not be normalized) to (ra, dec) in degrees.

    RA is returned in ``[0, 360)``.
    """
    v = np.asarray(vectors, dtype=np.float64)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    ra = np.degrees(np.arctan2(y, x)) % 360.0
    dec = np.degrees(np.arctan2(z, np.hypot(x, y)))
    return ra, dec


def polygon_from_radec(
    ra_deg: Sequence[float] | FloatArray, dec_deg: Sequence[float] | FloatArray
) -> sphgeom.ConvexPolygon:
    """Build a convex polygon from corner coordinates in degrees.

    Parameters
    ----------
    ra_deg, dec_deg : sequence of float
        Corner coordinates (at least 3), in any order; the convex hull is taken.

    Returns
    -------
    polygon : `lsst.sphgeom.ConvexPolygon`
    """
    vec = lonlat_to_vectors(ra_deg, dec_deg)
    if vec.ndim != 2 or vec.shape[0] < 3:
        raise ValueError(f"a polygon needs at least 3 corners, got shape {vec.shape[:-1]}")
    return sphgeom.ConvexPolygon([sphgeom.UnitVector3d(*row) for row in vec])


def region_corners_radec(polygon: sphgeom.ConvexPolygon) -> tuple[FloatArray, FloatArray]:
    """Return the vertices of ``polygon`` as (ra, dec) arrays in degrees."""
    verts = np.array([[v.x(), v.y(), v.z()] for v in polygon.getVertices()])
    return unit_vectors_to_radec(verts)


@overload
def encode_region(region: sphgeom.Region) -> bytes: ...
@overload
def encode_region(region: None) -> None: ...
def encode_region(region: sphgeom.Region | None) -> bytes | None:
    """Serialize a region to the bytes stored in the registry (None stays None)."""
    return None if region is None else bytes(region.encode())


@overload
def decode_region(data: bytes | bytearray | memoryview) -> sphgeom.Region: ...
@overload
def decode_region(data: None) -> None: ...
def decode_region(data: bytes | bytearray | memoryview | None) -> sphgeom.Region | None:
    """Inverse of :func:`encode_region` (also accepts :func:`encode_quads` output)."""
    return None if data is None else sphgeom.Region.decode(bytes(data))


def encode_quads(vectors: npt.ArrayLike) -> list[bytes]:
    """Encode many quadrilaterals as sphgeom ConvexPolygon bytes, vectorized.

    Parameters
    ----------
    vectors : array_like
        Shape ``(n, 4, 3)``: four corner vectors per polygon, in cyclic order (either
        orientation; clockwise ones are reversed). Vectors are normalized here.

    Returns
    -------
    encoded : list of bytes
        One ``ConvexPolygon.encode()``-compatible byte string per polygon, decodable
        with :func:`decode_region` (about 1 s per million polygons).

    Notes
    -----
    The corners must form a convex quadrilateral (true for the projected rectangle
    of a detector or patch smaller than a hemisphere).
    """
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 3 or v.shape[1:] != (4, 3):
        raise ValueError(f"expected an array of shape (n, 4, 3), got {v.shape}")
    v = v / np.sqrt(np.einsum("ijk,ijk->ij", v, v))[..., None]
    orient = np.einsum("ij,ij->i", np.cross(v[:, 0], v[:, 1]), v[:, 2])
    clockwise = orient < 0
    if clockwise.any():
        v[clockwise] = v[clockwise][:, ::-1]
    n = v.shape[0]
    buf = np.empty((n, _QUAD_BYTES), dtype=np.uint8)
    buf[:, 0] = _POLYGON_TYPE_CODE
    buf[:, 1:] = np.ascontiguousarray(v, dtype="<f8").reshape(n, 12).view(np.uint8)
    raw = buf.tobytes()
    del buf
    size = _QUAD_BYTES
    return [raw[i : i + size] for i in range(0, n * size, size)]


def htm_ranges(region: sphgeom.Region, level: int = HTM_LEVEL) -> list[tuple[int, int]]:
    """Return half-open ``[begin, end)`` HTM index ranges covering ``region``.

    Parameters
    ----------
    region : `lsst.sphgeom.Region`
        The region to cover.
    level : int
        HTM level (default 7, the ``htm7`` dimension).

    Returns
    -------
    ranges : list of (int, int)
        Sorted, non-overlapping ranges of trixel ids whose union contains the region
        (an envelope: it may contain trixels that only nearly touch the region).
    """
    return [(int(b), int(e)) for b, e in sphgeom.HtmPixelization(level).envelope(region)]


def htm7_ranges(region: sphgeom.Region) -> list[tuple[int, int]]:
    """Shorthand for :func:`htm_ranges` at level 7."""
    return htm_ranges(region, HTM_LEVEL)


def htm7_ids(region: sphgeom.Region) -> list[int]:
    """Every htm7 trixel id of the envelope of ``region``, sorted."""
    return [i for b, e in htm7_ranges(region) for i in range(b, e)]
