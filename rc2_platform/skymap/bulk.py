"""Vectorized generation of every tract and patch record of a sky map, for registration.

For ``hsc_rings_v1`` this is 18,938 tracts and 1,533,978 patches; everything is computed
with numpy (one TAN de-projection of a ``(n + 1) x (n + 1)`` corner grid per tract) and
the regions are encoded straight to sphgeom's byte format, without one Python region
object per patch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rc2_platform.geometry import encode_quads, tan_deproject, unit_vectors_to_radec
from rc2_platform.skymap.rings import RingsSkyMap

__all__ = [
    "PatchRecords",
    "TractRecords",
    "iter_patch_records",
    "patch_records",
    "tract_records",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class TractRecords:
    """Columns of the ``tract`` records (one row per tract, ordered by id).

    ``corner_ra``/``corner_dec`` have shape ``(n, 4)``; ``regions`` holds the encoded
    inner regions (bytes, decodable with `rc2_platform.geometry.decode_region`).
    """

    skymap: str
    tract: IntArray
    ra: FloatArray
    dec: FloatArray
    corner_ra: FloatArray
    corner_dec: FloatArray
    regions: list[bytes]

    def __len__(self) -> int:
        return len(self.tract)

    def as_dicts(self) -> list[dict[str, object]]:
        """Row dicts: skymap, id, ra, dec, region (bytes)."""
        return [
            {"skymap": self.skymap, "id": int(t), "ra": float(r), "dec": float(d), "region": g}
            for t, r, d, g in zip(self.tract, self.ra, self.dec, self.regions, strict=True)
        ]


@dataclass(frozen=True)
class PatchRecords:
    """Columns of the ``patch`` records (ordered by tract, then sequential patch id)."""

    skymap: str
    tract: IntArray
    patch: IntArray
    cell_x: IntArray
    cell_y: IntArray
    corner_ra: FloatArray
    corner_dec: FloatArray
    regions: list[bytes]

    def __len__(self) -> int:
        return len(self.tract)

    def as_dicts(self) -> list[dict[str, object]]:
        """Row dicts: skymap, tract, id, cell_x, cell_y, region (bytes). Slow for 1.5M rows."""
        return [
            {"skymap": self.skymap, "tract": int(t), "id": int(p), "cell_x": int(x),
             "cell_y": int(y), "region": g}
            for t, p, x, y, g in zip(
                self.tract, self.patch, self.cell_x, self.cell_y, self.regions, strict=True
            )
        ]  # fmt: skip


def _tract_ids(skymap: RingsSkyMap, tracts: npt.ArrayLike | None) -> IntArray:
    if tracts is None:
        return np.arange(skymap.num_tracts, dtype=np.int64)
    ids = np.asarray(tracts, dtype=np.int64).ravel()
    for t in ids[(ids < 0) | (ids >= skymap.num_tracts)][:1]:
        skymap.ring_indices(int(t))  # raises DimensionValueError naming the tract
    return ids


def _grid_vectors(skymap: RingsSkyMap, ids: IntArray) -> FloatArray:
    """Unit vectors of the patch-corner grid, shape ``(n_tracts, ny + 1, nx + 1, 3)``."""
    nx, ny = skymap.num_patches
    c = skymap.config
    # Standard coordinates (degrees) of the patch edges; the tangent point is the centre.
    step_x = c.patch_inner_dimensions[0] * c.pixel_scale_arcsec / 3600.0
    step_y = c.patch_inner_dimensions[1] * c.pixel_scale_arcsec / 3600.0
    xi = -(np.arange(nx + 1) - nx / 2.0) * step_x  # east is left: x grows to the west
    eta = (np.arange(ny + 1) - ny / 2.0) * step_y
    ra_all, dec_all = skymap.tract_centers()
    ra0 = ra_all[ids][:, None, None]
    dec0 = dec_all[ids][:, None, None]
    vec = tan_deproject(ra0, dec0, xi[None, None, :], eta[None, :, None])
    return vec / np.linalg.norm(vec, axis=-1, keepdims=True)


def tract_records(skymap: RingsSkyMap, tracts: npt.ArrayLike | None = None) -> TractRecords:
    """Records of all tracts (or of the given tract ids), vectorized."""
    ids = _tract_ids(skymap, tracts)
    grid = _grid_vectors(skymap, ids)
    corners = np.stack([grid[:, 0, 0], grid[:, 0, -1], grid[:, -1, -1], grid[:, -1, 0]], axis=1)
    cra, cdec = unit_vectors_to_radec(corners)
    ra_all, dec_all = skymap.tract_centers()
    return TractRecords(
        skymap.name, ids, ra_all[ids], dec_all[ids], cra, cdec, encode_quads(corners)
    )


def patch_records(
    skymap: RingsSkyMap, tracts: npt.ArrayLike | None = None, chunk_tracts: int = 2000
) -> PatchRecords:
    """Records of every patch of all tracts (or of the given tract ids), vectorized.

    Regions are the patches' inner regions, identical (up to rounding) to
    `PatchInfo.inner_region`. Work is done ``chunk_tracts`` tracts at a time to bound
    the temporaries; use :func:`iter_patch_records` to stream the chunks instead.
    """
    chunks = list(iter_patch_records(skymap, tracts, chunk_tracts))
    if len(chunks) == 1:
        return chunks[0]
    regions: list[bytes] = []
    for c in chunks:
        regions.extend(c.regions)
    return PatchRecords(
        skymap=skymap.name,
        tract=np.concatenate([c.tract for c in chunks]),
        patch=np.concatenate([c.patch for c in chunks]),
        cell_x=np.concatenate([c.cell_x for c in chunks]),
        cell_y=np.concatenate([c.cell_y for c in chunks]),
        corner_ra=np.concatenate([c.corner_ra for c in chunks]),
        corner_dec=np.concatenate([c.corner_dec for c in chunks]),
        regions=regions,
    )


def iter_patch_records(
    skymap: RingsSkyMap, tracts: npt.ArrayLike | None = None, chunk_tracts: int = 2000
) -> Iterator[PatchRecords]:
    """Yield `PatchRecords` for ``chunk_tracts`` tracts at a time (same order as
    :func:`patch_records`), so registration can insert batch by batch."""
    ids = _tract_ids(skymap, tracts)
    for start in range(0, max(len(ids), 1), chunk_tracts):
        yield _patch_chunk(skymap, ids[start : start + chunk_tracts])


def _patch_chunk(skymap: RingsSkyMap, ids: IntArray) -> PatchRecords:
    nx, ny = skymap.num_patches
    grid = _grid_vectors(skymap, ids)  # (T, ny+1, nx+1, 3)
    corners = np.stack(
        [grid[:, :-1, :-1], grid[:, :-1, 1:], grid[:, 1:, 1:], grid[:, 1:, :-1]], axis=3
    )  # (T, ny, nx, 4, 3): patch (x, y) at [:, y, x]
    del grid
    corners = corners.reshape(-1, 4, 3)
    cra, cdec = unit_vectors_to_radec(corners)
    n_t = len(ids)
    cell_y, cell_x = np.divmod(np.arange(nx * ny, dtype=np.int64), nx)
    return PatchRecords(
        skymap=skymap.name,
        tract=np.repeat(ids, nx * ny),
        patch=np.tile(np.arange(nx * ny, dtype=np.int64), n_t),
        cell_x=np.tile(cell_x, n_t),
        cell_y=np.tile(cell_y, n_t),
        corner_ra=cra,
        corner_dec=cdec,
        regions=encode_quads(corners),
    )
