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
from typing import TYPE_CHECKING

import lsst.sphgeom as sphgeom
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # scipy.spatial costs ~0.2 s to import: loaded when a tree is built
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
    from scipy.spatial import cKDTree

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
    from scipy.spatial import cKDTree

    ia, ib = _candidates(cKDTree(cb), len(b), ca, float(ra.max() + rb.max()))
    near = _near(ca, ra, cb, rb, ia, ib)
    ia, ib = ia[near], ib[near]
    keep = _exact(a, _normals(a), b, _normals(b), ia, ib)
    return ia[keep], ib[keep]


def grid_pixel_overlaps(
    centre: FloatArray,
    east: FloatArray,
    north: FloatArray,
    x_edges: FloatArray,
    y_edges: FloatArray,
    level: int,
) -> tuple[IntArray, IntArray]:
    """HTM pixels overlapping the cells of gnomonic (TAN) grids, e.g. sky-map patches.

    Each group ``g`` is a grid of ``nx x ny`` cells on the tangent plane at
    ``centre[g]`` with axes ``east[g]``/``north[g]`` (orthonormal): cell ``(x, y)`` is
    the great-circle polygon whose plane coordinates (``v.e / v.c``, ``v.n / v.c``) span
    ``x_edges[x]..x_edges[x + 1]`` and ``y_edges[y]..y_edges[y + 1]`` (tangent-plane
    units, i.e. ``tan`` of the angle). Great circles are straight lines in this
    projection, so a cell is an axis-aligned rectangle and a trixel a triangle, and the
    2-D separating-axis test (rectangle axes + triangle edge normals) is exact. Touching
    pairs count as overlapping, as in :func:`pixel_overlaps`.

    Parameters
    ----------
    centre, east, north : numpy.ndarray
        ``(g, 3)`` tangent points and plane axes.
    x_edges, y_edges : numpy.ndarray
        ``nx + 1`` and ``ny + 1`` cell edges, monotonic, shared by every group.
    level : int
        HTM level.

    Returns
    -------
    row, pixel : numpy.ndarray
        ``row = g * nx * ny + y * nx + x`` and the HTM pixel id, sorted by row then pixel.
    """
    xe, ye = np.asarray(x_edges, np.float64), np.asarray(y_edges, np.float64)
    nx, ny = len(xe) - 1, len(ye) - 1
    if len(centre) == 0 or nx < 1 or ny < 1:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    xlo, xhi = np.minimum(xe[:-1], xe[1:]), np.maximum(xe[:-1], xe[1:])
    ylo, yhi = np.minimum(ye[:-1], ye[1:]), np.maximum(ye[:-1], ye[1:])
    # Bounding circle of a whole grid: its farthest corner from the tangent point.
    far = np.hypot(np.abs(xe).max(), np.abs(ye).max())
    radius = float(np.arctan(far))
    tree, _, tcentres, tradii = _trixel_index(level)
    tverts, tids = trixels(level)
    gi, ti = _candidates(tree, len(tids), centre, radius + float(tradii.max()))
    near = _near(centre, np.full(len(centre), radius), tcentres, tradii, gi, ti)
    gi, ti = gi[near], ti[near]
    shift = int(tids.max()).bit_length()
    keys: list[IntArray] = []
    step = max(1, _CHUNK // (nx * ny // 8 + 1))
    for s in range(0, len(gi), step):
        g, t = gi[s : s + step], ti[s : s + step]
        pair, yy, xx = _grid_cells(
            tverts[t], centre[g], east[g], north[g], (xlo, xhi, ylo, yhi)
        ).nonzero()
        row = g[pair] * (nx * ny) + yy * nx + xx
        keys.append((row << shift) | tids[t[pair]])
    key = np.sort(np.concatenate(keys)) if keys else np.empty(0, np.int64)
    return key >> shift, key & ((1 << shift) - 1)


def _grid_cells(
    tv: FloatArray,
    c: FloatArray,
    e: FloatArray,
    n: FloatArray,
    bounds: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
) -> npt.NDArray[np.bool_]:
    """``(pairs, ny, nx)`` flags: does triangle ``tv[p]`` meet cell ``(x, y)`` of plane ``p``."""
    xlo, xhi, ylo, yhi = bounds
    d = np.einsum("pvk,pk->pv", tv, c)
    if (d <= 0.0).any():
        raise ValueError("a trixel candidate lies outside a grid's tangent hemisphere")
    px = np.einsum("pvk,pk->pv", tv, e) / d
    py = np.einsum("pvk,pk->pv", tv, n) / d
    # Rectangle axes: bounding-box separation.
    keep_x = (px.max(1)[:, None] >= xlo - _EPS) & (px.min(1)[:, None] <= xhi + _EPS)
    keep_y = (py.max(1)[:, None] >= ylo - _EPS) & (py.min(1)[:, None] <= yhi + _EPS)
    keep = keep_y[:, :, None] & keep_x[:, None, :]
    # Triangle edge normals, oriented so that the triangle lies on the >= 0 side.
    orient = np.sign(
        (px[:, 1] - px[:, 0]) * (py[:, 2] - py[:, 0])
        - (py[:, 1] - py[:, 0]) * (px[:, 2] - px[:, 0])
    )
    for i in range(3):
        j = (i + 1) % 3
        a = -(py[:, j] - py[:, i]) * orient
        b = (px[:, j] - px[:, i]) * orient
        norm = np.hypot(a, b)
        norm[norm == 0] = 1.0
        a, b = a / norm, b / norm
        c0 = -(a * px[:, i] + b * py[:, i])
        fx = np.maximum(a[:, None] * xlo, a[:, None] * xhi)
        fy = np.maximum(b[:, None] * ylo, b[:, None] * yhi)
        keep &= (c0[:, None, None] + fy[:, :, None] + fx[:, None, :]) >= -_EPS
    return keep
