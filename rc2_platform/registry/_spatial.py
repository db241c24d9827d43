"""Vectorized spatial overlaps of convex polygons (numpy + a k-d tree), for bulk inserts.

Regions arrive as sphgeom ``ConvexPolygon`` encodings (``b"p"`` + vertices as
little-endian doubles), e.g. from :func:`rc2_platform.geometry.encode_quads`. They are
viewed as ``(n, k, 3)`` vertex arrays without creating Python region objects.

Candidates come from a k-d tree of centres (all pairs whose bounding circles may
meet); each candidate pair then gets an exact separating-great-circle test: two convex
spherical polygons inside a common hemisphere are disjoint if and only if all vertices
of one lie strictly outside an edge's great circle of the other. Pairs that only touch
(shared edge or vertex, within 1e-12 rad) count as overlapping, i.e. the result is
conservative at boundaries, like sphgeom's ``Region.overlaps`` for undecidable cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import lsst.sphgeom as sphgeom
import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_POLYGON = ord("p")
_EPS = 1e-12
_CHUNK = 200_000


def polygon_vertices(blobs: Sequence[bytes | memoryview]) -> FloatArray | None:
    """``(n, k, 3)`` vertices if every blob encodes a ConvexPolygon with the same k, else None."""
    if not blobs:
        return None
    size = len(blobs[0])
    if (size - 1) % 24 != 0 or size < 73:
        return None
    if any(len(b) != size for b in blobs):
        return None
    raw = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), size)
    if (raw[:, 0] != _POLYGON).any():
        return None
    k = (size - 1) // 24
    return np.ascontiguousarray(raw[:, 1:]).view("<f8").reshape(len(blobs), k, 3)


def _normals(v: FloatArray) -> FloatArray:
    """Inward edge normals ``v[i] x v[i+1]`` (flipped for clockwise polygons)."""
    n = np.cross(v, np.roll(v, -1, axis=1))
    orient = np.einsum("ij,ij->i", n[:, 0], v[:, 2])
    n[orient < 0] *= -1.0
    return n


def _bounds(v: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Unit centres and angular radii (radians) of bounding circles."""
    c = v.sum(axis=1)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    cosr = np.einsum("ik,ijk->ij", c, v).min(axis=1)
    return c, np.arccos(np.clip(cosr, -1.0, 1.0))


@lru_cache(maxsize=4)
def trixels(level: int) -> tuple[FloatArray, IntArray]:
    """Vertices ``(8 * 4**level, 3, 3)`` and ids of every HTM trixel at ``level``."""
    pix = sphgeom.HtmPixelization(0)
    verts = np.array(
        [[[p.x(), p.y(), p.z()] for p in pix.triangle(i).getVertices()] for i in range(8, 16)]
    )
    ids = np.arange(8, 16, dtype=np.int64)
    for _ in range(level):
        v0, v1, v2 = verts[:, 0], verts[:, 1], verts[:, 2]
        w0, w1, w2 = v1 + v2, v0 + v2, v0 + v1
        for w in (w0, w1, w2):
            w /= np.linalg.norm(w, axis=1, keepdims=True)
        kids = np.stack(
            [
                np.stack([v0, w2, w1], 1),
                np.stack([v1, w0, w2], 1),
                np.stack([v2, w1, w0], 1),
                np.stack([w0, w1, w2], 1),
            ],
            axis=1,
        )
        verts = kids.reshape(-1, 3, 3)
        ids = (ids[:, None] * 4 + np.arange(4)).reshape(-1)
    return verts, ids


@lru_cache(maxsize=4)
def _trixel_index(level: int) -> tuple[cKDTree, FloatArray, FloatArray, FloatArray]:
    verts, _ = trixels(level)
    centres, radii = _bounds(verts)
    return cKDTree(centres), _normals(verts), centres, radii


def _chord(angle: float) -> float:
    return 2.0 * np.sin(min(angle, np.pi) / 2.0)


def _candidates(
    tree: cKDTree, n_tree: int, centres: FloatArray, radius: float
) -> tuple[IntArray, IntArray]:
    """All (query index, tree index) pairs with centres within ``radius`` radians."""
    bound = _chord(radius) * (1 + 1e-9)
    k = min(16, n_tree)
    todo = np.arange(len(centres))
    qi: list[IntArray] = []
    ti: list[IntArray] = []
    while len(todo):
        dist, idx = tree.query(centres[todo], k=k, distance_upper_bound=bound)
        dist = dist.reshape(len(todo), -1)
        idx = idx.reshape(len(todo), -1)
        full = np.isfinite(dist[:, -1]) if k < n_tree else np.zeros(len(todo), bool)
        done = ~full
        hit = np.isfinite(dist[done])
        qi.append(np.repeat(todo[done], hit.sum(axis=1)))
        ti.append(idx[done][hit])
        todo = todo[full]
        k = min(k * 4, n_tree)
    return np.concatenate(qi).astype(np.int64), np.concatenate(ti).astype(np.int64)


def _outside_all(n: FloatArray, v: FloatArray) -> npt.NDArray[np.bool_]:
    """For each pair m: some normal ``n[m, i]`` has every vertex ``v[m, j]`` strictly outside."""
    out = np.zeros(len(n), dtype=bool)
    vx, vy, vz = v[:, :, 0], v[:, :, 1], v[:, :, 2]
    for i in range(n.shape[1]):
        d = n[:, i, 0:1] * vx + n[:, i, 1:2] * vy + n[:, i, 2:3] * vz
        out |= (d < -_EPS).all(axis=1)
    return out


def _exact(
    va: FloatArray,
    na: FloatArray,
    vb: FloatArray,
    nb: FloatArray,
    ia: IntArray,
    ib: IntArray,
) -> npt.NDArray[np.bool_]:
    """Exact overlap flags of candidate pairs ``(ia, ib)`` (separating great circles)."""
    keep = np.empty(len(ia), dtype=bool)
    for s in range(0, len(ia), _CHUNK):
        a, b = ia[s : s + _CHUNK], ib[s : s + _CHUNK]
        sep = _outside_all(na[a], vb[b])
        rest = ~sep
        sep[rest] = _outside_all(nb[b[rest]], va[a[rest]])
        keep[s : s + _CHUNK] = ~sep
    return keep


def _near(
    ca: FloatArray, ra: FloatArray, cb: FloatArray, rb: FloatArray, ia: IntArray, ib: IntArray
) -> npt.NDArray[np.bool_]:
    """Whether the bounding circles of each candidate pair meet (cheap pre-filter)."""
    cosd = np.einsum("ij,ij->i", ca[ia], cb[ib])
    return cosd >= np.cos(np.minimum(ra[ia] + rb[ib], np.pi)) - 1e-12


def pixel_overlaps(vertices: FloatArray, level: int) -> tuple[IntArray, IntArray]:
    """(polygon index, HTM pixel id) of every trixel at ``level`` overlapping each polygon."""
    if len(vertices) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    tree, tnormals, tcentres, tradii = _trixel_index(level)
    tverts, tids = trixels(level)
    centres, radii = _bounds(vertices)
    ia, it = _candidates(tree, len(tids), centres, float(radii.max() + tradii.max()))
    near = _near(centres, radii, tcentres, tradii, ia, it)
    ia, it = ia[near], it[near]
    keep = _exact(vertices, _normals(vertices), tverts, tnormals, ia, it)
    order = np.lexsort((tids[it[keep]], ia[keep]))
    return ia[keep][order], tids[it[keep]][order]


def region_overlaps(a: FloatArray, b: FloatArray) -> tuple[IntArray, IntArray]:
    """(index in ``a``, index in ``b``) of every overlapping pair of polygons."""
    if len(a) == 0 or len(b) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    ca, ra = _bounds(a)
    cb, rb = _bounds(b)
    ia, ib = _candidates(cKDTree(cb), len(b), ca, float(ra.max() + rb.max()))
    near = _near(ca, ra, cb, rb, ia, ib)
    ia, ib = ia[near], ib[near]
    keep = _exact(a, _normals(a), b, _normals(b), ia, ib)
    return ia[keep], ib[keep]
