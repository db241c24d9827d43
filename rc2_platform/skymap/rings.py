"""The rings sky map: tracts on declination rings, each a TAN projection cut into patches.

Numbering follows LSST's ``RingsSkyMap``: the sky between the poles is cut into
``num_rings`` declination rings of height ``180 / (num_rings + 1)`` degrees; ring ``i``
holds ``int(2 pi cos(dec_edge) / ring_size) + 1`` tracts evenly spaced in RA from
``ra_start`` (``dec_edge`` is the ring edge nearer the equator). Tract 0 is the south
polar cap, then the rings from south to north, each numbered by increasing RA, and the
last tract is the north polar cap. With 120 rings this gives 18,938 tracts.

Each tract is a TAN projection centred on its tract centre with north up and east left.
Its pixel box is the smallest whole number of patches covering the circle of radius
``ring_size / 2 + overlap``, centred on the tangent point, so the geometry (patch
boundaries on the sky) depends only on ``patch_inner_dimensions * pixel_scale``: the
``tiny`` configuration (8x coarser pixels, 8x smaller patches) has exactly the same
tracts and patch boundaries as the full one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import lsst.sphgeom as sphgeom
import numpy as np
import numpy.typing as npt
from astropy.wcs import WCS

from rc2_platform.errors import DimensionValueError
from rc2_platform.geometry import tan_deproject
from rc2_platform.skymap.config import SkyMapConfig

__all__ = ["PatchInfo", "PixelBox", "RingsSkyMap", "TractInfo"]

FloatArray = npt.NDArray[np.float64]


class PixelBox(NamedTuple):
    """An integer pixel box ``[x_min, x_max) x [y_min, y_max)`` (max exclusive)."""

    x_min: int
    y_min: int
    x_max: int
    y_max: int

    @property
    def width(self) -> int:
        """Number of columns."""
        return self.x_max - self.x_min

    @property
    def height(self) -> int:
        """Number of rows."""
        return self.y_max - self.y_min

    def contains(self, other: PixelBox) -> bool:
        """Whether ``other`` lies inside this box."""
        return (
            self.x_min <= other.x_min
            and self.y_min <= other.y_min
            and other.x_max <= self.x_max
            and other.y_max <= self.y_max
        )


def _box_polygon(tract: TractInfo, box: PixelBox) -> sphgeom.ConvexPolygon:
    """Sky polygon of a pixel box's outer pixel edges in a tract's projection."""
    x = np.array([box.x_min, box.x_max, box.x_max, box.x_min], dtype=float) - 0.5
    y = np.array([box.y_min, box.y_min, box.y_max, box.y_max], dtype=float) - 0.5
    vec = tract.pixel_to_vectors(x, y)
    return sphgeom.ConvexPolygon([sphgeom.UnitVector3d(*v) for v in vec])


@dataclass(frozen=True)
class PatchInfo:
    """One patch of a tract.

    Attributes
    ----------
    index : tuple of int
        ``(x, y)`` position in the tract's patch grid (``cell_x``, ``cell_y``).
    sequential_id : int
        ``y * nx + x``: the ``patch`` dimension value.
    inner_bbox, outer_bbox : `PixelBox`
        Boxes in the tract's pixel grid; the outer box adds ``patch_border`` and is
        clipped to the tract.
    tract : `TractInfo`
        The tract it belongs to.
    """

    index: tuple[int, int]
    sequential_id: int
    inner_bbox: PixelBox
    outer_bbox: PixelBox
    tract: TractInfo = field(repr=False)

    @property
    def pixel_origin(self) -> tuple[int, int]:
        """Tract pixel of a patch image's (0, 0) pixel (the outer box minimum)."""
        return self.outer_bbox.x_min, self.outer_bbox.y_min

    @property
    def wcs(self) -> WCS:
        """WCS of a patch image covering the outer box (tract WCS, shifted origin)."""
        wcs = self.tract.wcs.deepcopy()
        wcs.wcs.crpix = wcs.wcs.crpix - np.array(self.pixel_origin, dtype=float)
        wcs.pixel_shape = (self.outer_bbox.width, self.outer_bbox.height)
        return wcs

    @functools.cached_property
    def inner_region(self) -> sphgeom.ConvexPolygon:
        """Sky polygon of the inner box: the region registered for the patch."""
        return _box_polygon(self.tract, self.inner_bbox)

    @functools.cached_property
    def outer_region(self) -> sphgeom.ConvexPolygon:
        """Sky polygon of the outer box (with border)."""
        return _box_polygon(self.tract, self.outer_bbox)

    @property
    def region(self) -> sphgeom.ConvexPolygon:
        """The registered region (= :attr:`inner_region`)."""
        return self.inner_region


@dataclass(frozen=True, eq=False)
class TractInfo:
    """One tract: centre, WCS, pixel box, regions and patches.

    Attributes
    ----------
    id : int
        Tract id.
    ring : int
        Ring index (-1 south cap, ``num_rings`` north cap).
    ra, dec : float
        Tract centre (tangent point), degrees.
    num_patches : tuple of int
        ``(nx, ny)``.
    config : `SkyMapConfig`
        The sky map's configuration.
    """

    id: int
    ring: int
    ra: float
    dec: float
    num_patches: tuple[int, int]
    config: SkyMapConfig = field(repr=False)

    @property
    def bbox(self) -> PixelBox:
        """Pixel box of the whole tract: ``[0, nx * inner) x [0, ny * inner)``."""
        ix, iy = self.config.patch_inner_dimensions
        return PixelBox(0, 0, self.num_patches[0] * ix, self.num_patches[1] * iy)

    @property
    def crpix0(self) -> tuple[float, float]:
        """0-based pixel of the tangent point (the centre of the box)."""
        b = self.bbox
        return (b.width - 1) / 2.0, (b.height - 1) / 2.0

    @functools.cached_property
    def wcs(self) -> WCS:
        """The tract's TAN WCS (north up, east left)."""
        scale = self.config.pixel_scale_arcsec / 3600.0
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.cunit = ["deg", "deg"]
        wcs.wcs.crval = [self.ra, self.dec]
        wcs.wcs.crpix = [self.crpix0[0] + 1.0, self.crpix0[1] + 1.0]
        wcs.wcs.cd = [[-scale, 0.0], [0.0, scale]]
        wcs.wcs.lonpole = 180.0
        wcs.wcs.radesys = "ICRS"
        wcs.pixel_shape = (self.bbox.width, self.bbox.height)
        return wcs

    def pixel_to_vectors(self, x: npt.ArrayLike, y: npt.ArrayLike) -> FloatArray:
        """Tract pixel coordinates (0-based) to unit vectors ``(..., 3)``, vectorized."""
        scale = self.config.pixel_scale_arcsec / 3600.0
        xi = -(np.asarray(x, dtype=float) - self.crpix0[0]) * scale
        eta = (np.asarray(y, dtype=float) - self.crpix0[1]) * scale
        v = tan_deproject(self.ra, self.dec, xi, eta)
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    @functools.cached_property
    def inner_region(self) -> sphgeom.ConvexPolygon:
        """Sky polygon of the whole pixel box: the union of the patches' inner regions."""
        return _box_polygon(self, self.bbox)

    @property
    def region(self) -> sphgeom.ConvexPolygon:
        """The registered region (= :attr:`inner_region`)."""
        return self.inner_region

    def patch(self, index: int | tuple[int, int]) -> PatchInfo:
        """Return a patch by sequential id or by ``(x, y)`` index."""
        nx, ny = self.num_patches
        if isinstance(index, tuple):
            x, y = index
        else:
            y, x = divmod(int(index), nx)
        if not (0 <= x < nx and 0 <= y < ny):
            raise DimensionValueError(
                f"patch {index!r} does not exist in tract {self.id}: patches are 0..{nx * ny - 1} "
                f"(x in 0..{nx - 1}, y in 0..{ny - 1})"
            )
        ix, iy = self.config.patch_inner_dimensions
        inner = PixelBox(x * ix, y * iy, (x + 1) * ix, (y + 1) * iy)
        b, t = self.config.patch_border, self.bbox
        outer = PixelBox(
            max(inner.x_min - b, t.x_min),
            max(inner.y_min - b, t.y_min),
            min(inner.x_max + b, t.x_max),
            min(inner.y_max + b, t.y_max),
        )
        return PatchInfo((x, y), y * nx + x, inner, outer, self)

    @property
    def patches(self) -> list[PatchInfo]:
        """All patches, in sequential-id order."""
        nx, ny = self.num_patches
        return [self.patch(i) for i in range(nx * ny)]

    def __iter__(self) -> Iterator[PatchInfo]:
        return iter(self.patches)

    def find_patches(self, region: sphgeom.Region) -> list[PatchInfo]:
        """Patches whose inner region overlaps ``region`` (conservatively: may overlap)."""
        if self.inner_region.relate(region) & sphgeom.DISJOINT:
            return []
        return [p for p in self.patches if not (p.inner_region.relate(region) & sphgeom.DISJOINT)]

    def record(self, skymap: str) -> dict[str, object]:
        """Registry ``tract`` record (skymap, id, region as a sphgeom object, ra, dec)."""
        return {
            "skymap": skymap,
            "id": self.id,
            "region": self.region,
            "ra": self.ra,
            "dec": self.dec,
        }


class RingsSkyMap:
    """A rings sky map built from a `SkyMapConfig`.

    Parameters
    ----------
    config : `SkyMapConfig`
        The configuration (see ``rc2_platform/config/skymaps.yaml``).
    """

    def __init__(self, config: SkyMapConfig):
        self.config = config
        self.name = config.name
        n = config.num_rings
        self.ring_size = math.pi / (n + 1)  # radians
        nums = []
        for i in range(n):
            start = self.ring_size * (i + 0.5) - 0.5 * math.pi
            edge = min(abs(start), abs(start + self.ring_size))
            nums.append(int(2 * math.pi * math.cos(edge) / self.ring_size) + 1)
        self.ring_nums: list[int] = nums
        self._ring_offsets = np.concatenate([[1], 1 + np.cumsum(nums)]).astype(np.int64)
        self.num_tracts = sum(nums) + 2
        self.tract_radius_deg = (
            math.degrees(0.5 * self.ring_size) + config.tract_overlap_arcsec / 3600
        )
        # Number of patches: the whole number covering the tract circle in the TAN plane.
        half_width_arcsec = math.degrees(math.tan(math.radians(self.tract_radius_deg))) * 3600
        self.num_patches = tuple(
            math.ceil(2 * half_width_arcsec / (d * config.pixel_scale_arcsec) - 1e-9)
            for d in config.patch_inner_dimensions
        )

    def __len__(self) -> int:
        return self.num_tracts

    def ring_indices(self, tract_id: int) -> tuple[int, int]:
        """Return ``(ring, index_in_ring)``; ring -1 / ``num_rings`` are the caps."""
        self._check_tract(tract_id)
        if tract_id == 0:
            return -1, 0
        if tract_id == self.num_tracts - 1:
            return self.config.num_rings, 0
        ring = int(np.searchsorted(self._ring_offsets, tract_id, side="right") - 1)
        return ring, tract_id - int(self._ring_offsets[ring])

    def _check_tract(self, tract_id: int) -> None:
        if not 0 <= tract_id < self.num_tracts:
            raise DimensionValueError(
                f"tract {tract_id} does not exist in sky map {self.name!r}: "
                f"tracts are 0..{self.num_tracts - 1}"
            )

    def tract_centers(self) -> tuple[FloatArray, FloatArray]:
        """Centres (ra, dec) in degrees of all tracts, indexed by tract id."""
        ra = np.zeros(self.num_tracts)
        dec = np.zeros(self.num_tracts)
        dec[0], dec[-1] = -90.0, 90.0
        for ring, num in enumerate(self.ring_nums):
            start = int(self._ring_offsets[ring])
            dec[start : start + num] = math.degrees(self.ring_size * (ring + 1) - 0.5 * math.pi)
            ra[start : start + num] = (self.config.ra_start + 360.0 * np.arange(num) / num) % 360.0
        return ra, dec

    @functools.lru_cache(maxsize=1024)  # noqa: B019 - sky maps live as long as the process
    def tract(self, tract_id: int) -> TractInfo:
        """Return a tract by id.

        Raises
        ------
        DimensionValueError
            If the id is out of range.
        """
        tract_id = int(tract_id)
        ring, index = self.ring_indices(tract_id)
        if ring == -1 or ring == self.config.num_rings:
            ra, dec = 0.0, (-90.0 if ring == -1 else 90.0)
        else:
            dec = math.degrees(self.ring_size * (ring + 1) - 0.5 * math.pi)
            ra = (self.config.ra_start + 360.0 * index / self.ring_nums[ring]) % 360.0
        nx, ny = self.num_patches
        return TractInfo(tract_id, ring, ra, dec, (nx, ny), self.config)

    def __iter__(self) -> Iterator[TractInfo]:
        return (self.tract(i) for i in range(self.num_tracts))

    def find_tract_ids(self, ra: npt.ArrayLike, dec: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Vectorized :meth:`find_tract`: the tract id whose centre region holds each point."""
        ra_r = np.radians(np.asarray(ra, dtype=float))
        dec_r = np.radians(np.asarray(dec, dtype=float))
        offset = dec_r + 0.5 * math.pi - 0.5 * self.ring_size
        ring = np.floor(offset / self.ring_size).astype(np.int64)
        n = self.config.num_rings
        out = np.empty(np.shape(ring), dtype=np.int64)
        south, north = offset < 0, ring >= n
        mid = ~(south | north)
        out[south], out[north] = 0, self.num_tracts - 1
        r = ring[mid]
        nums = np.asarray(self.ring_nums, dtype=np.int64)[r]
        delta = 2 * math.pi / nums
        rel = np.mod(ra_r[mid] - math.radians(self.config.ra_start) + 0.5 * delta, 2 * math.pi)
        idx = np.floor(rel / delta).astype(np.int64) % nums
        out[mid] = self._ring_offsets[r] + idx
        return out

    def find_tract(self, ra: float, dec: float) -> TractInfo:
        """The tract whose centre is nearest (ring, then RA) to ``(ra, dec)`` in degrees."""
        return self.tract(int(self.find_tract_ids(np.array([ra]), np.array([dec]))[0]))

    def find_patches(self, tract: int | TractInfo, region: sphgeom.Region) -> list[PatchInfo]:
        """Patches of ``tract`` whose inner region overlaps ``region``."""
        info = tract if isinstance(tract, TractInfo) else self.tract(tract)
        return info.find_patches(region)

    def skymap_record(self) -> dict[str, object]:
        """Registry ``skymap`` record: name, hash, tract_max, patch_nx_max, patch_ny_max."""
        return {
            "name": self.name,
            "hash": self.config.geometry_hash(),
            "tract_max": self.num_tracts,
            "patch_nx_max": self.num_patches[0],
            "patch_ny_max": self.num_patches[1],
        }
