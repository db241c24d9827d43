"""Materialized spatial overlaps of dimension records (element-skypix and element-element).

:class:`OverlapWriter` computes, for new records with regions, the rows of every overlap
table ``config/dimensions.yaml`` configures: convex polygons set-wise with numpy
(``geometry.polygon_overlaps``), other regions with lsst.sphgeom, candidates of
element-element pairs taken from shared skypix pixels.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

import sqlalchemy as sa
from lsst.sphgeom import Region

from rc2_platform.errors import DimensionError
from rc2_platform.geometry import polygon_overlaps as _spatial
from rc2_platform.geometry import region_overlaps as _overlaps
from rc2_platform.registry._bulk import chunks
from rc2_platform.registry._dialect import insert_rows
from rc2_platform.registry.dimensions import DimensionElement, DimensionUniverse
from rc2_platform.registry.schema import RegistrySchema

__all__ = ["OverlapWriter"]


class OverlapWriter:
    """Writes the overlap rows of new dimension records of one schema."""

    def __init__(self, schema: RegistrySchema):
        self.schema = schema
        self.universe: DimensionUniverse = schema.universe

    def insert_overlaps(
        self, conn: sa.Connection, el: DimensionElement, rows: list[dict[str, Any]]
    ) -> None:
        """Materialize every configured overlap involving the new ``rows`` of ``el``."""
        if not rows:
            return
        self.insert_region_overlaps(
            conn, el, [tuple(r[d] for d in el.required) for r in rows], [r["region"] for r in rows]
        )

    def insert_region_overlaps(
        self,
        conn: sa.Connection,
        el: DimensionElement,
        keys: list[tuple[Any, ...]],
        blobs: list[bytes],
    ) -> None:
        """Materialize the overlaps of new records given as keys and encoded regions."""
        if not keys:
            return
        verts = _spatial.polygon_vertices(blobs)
        if verts is not None:
            self._insert_overlaps_vectorized(conn, el, keys, verts)
            return
        items = [(k, Region.decode(b)) for k, b in zip(keys, blobs, strict=True)]
        pixel_memberships: dict[int, list[tuple[Any, int]]] = {}
        overlaps = self.universe.config.overlaps
        # Skypix overlaps first: the region-region pairs below use them as candidates.
        for ov in overlaps:
            other = self.universe[ov.b]
            if ov.a == el.name and other.skypix_level is not None:
                pairs = _overlaps.pixel_overlaps(items, other.skypix_level)
                pixel_memberships[other.skypix_level] = pairs
                self._insert_pairs(conn, ov.table, el, other, pairs)
        for ov in overlaps:
            if el.name not in (ov.a, ov.b) or self.universe[ov.b].skypix_level is not None:
                continue
            other = self.universe[ov.b if ov.a == el.name else ov.a]
            region_pairs = self._region_pairs(conn, el, items, other, pixel_memberships)
            if ov.a == el.name:
                self._insert_pairs(conn, ov.table, el, other, region_pairs)
            else:
                self._insert_pairs(conn, ov.table, other, el, [(b, a) for a, b in region_pairs])

    def _insert_overlaps_vectorized(
        self,
        conn: sa.Connection,
        el: DimensionElement,
        keys: list[tuple[Any, ...]],
        verts: Any,
    ) -> None:
        """Overlaps of convex-polygon regions, computed set-wise (see ``rc2_platform.geometry.polygon_overlaps``)."""
        pixels: dict[int, tuple[Any, Any]] = {}
        for ov in self.universe.config.overlaps:
            other = self.universe[ov.b]
            if ov.a == el.name and other.skypix_level is not None:
                idx, pix = _spatial.pixel_overlaps(verts, other.skypix_level)
                pixels[other.skypix_level] = (idx, pix)
                rows = [(*keys[i], p) for i, p in zip(idx.tolist(), pix.tolist(), strict=True)]
                self._insert_rows(conn, ov.table, el, other, rows)
        self.insert_region_region_overlaps(conn, el, keys, verts, pixels)

    def insert_region_region_overlaps(
        self,
        conn: sa.Connection,
        el: DimensionElement,
        keys: list[tuple[Any, ...]],
        verts: Any,
        pixels: dict[int, tuple[Any, Any]],
    ) -> None:
        """Overlaps of new convex polygons with the regions of other elements.

        ``pixels`` maps a skypix level to the new records' ``(row index, pixel)``
        memberships, used to fetch only the other records sharing a pixel.
        """
        for ov in self.universe.config.overlaps:
            if el.name not in (ov.a, ov.b) or self.universe[ov.b].skypix_level is not None:
                continue
            other = self.universe[ov.b if ov.a == el.name else ov.a]
            other_keys, other_blobs = self._other_regions(conn, el, other, pixels)
            if not other_keys:
                continue
            other_verts = _spatial.polygon_vertices(other_blobs)
            if other_verts is None:
                mine = [(k, Region.decode(self._blob(verts[i]))) for i, k in enumerate(keys)]
                right = [
                    (k, Region.decode(b)) for k, b in zip(other_keys, other_blobs, strict=True)
                ]
                pairs = _overlaps.region_pairs(mine, right)
            else:
                ia, ib = _spatial.region_overlaps(verts, other_verts)
                pairs = [
                    (keys[i], other_keys[j]) for i, j in zip(ia.tolist(), ib.tolist(), strict=True)
                ]
            if ov.a == el.name:
                self._insert_pairs(conn, ov.table, el, other, pairs)
            else:
                self._insert_pairs(conn, ov.table, other, el, [(b, a) for a, b in pairs])

    @staticmethod
    def _blob(vertices: Any) -> bytes:
        return b"p" + vertices.astype("<f8").tobytes()

    def _other_regions(
        self,
        conn: sa.Connection,
        el: DimensionElement,
        other: DimensionElement,
        pixels: dict[int, tuple[Any, Any]],
    ) -> tuple[list[tuple[Any, ...]], list[bytes]]:
        """Keys and region bytes of ``other`` records that may overlap the new regions."""
        mine, theirs = self._pixel_table(el.name), self._pixel_table(other.name)
        other_table = self.schema.elements[other.name]
        cols = [other_table.c[d] for d in other.required]
        if mine is None or theirs is None or mine[1] != theirs[1] or mine[1] not in pixels:
            stmt = sa.select(*cols, other_table.c.region).where(other_table.c.region.is_not(None))
            found = {tuple(r[:-1]): bytes(r[-1]) for r in conn.execute(stmt)}
        else:
            pix_table = self.schema.overlaps[theirs[0]]
            pixel_col = pix_table.c[_skypix_name(self.universe, theirs[1])]
            join_on = sa.and_(*[pix_table.c[d] == other_table.c[d] for d in other.required])
            found = {}
            for part in chunks(sorted(set(pixels[mine[1]][1].tolist()))):
                stmt = (
                    sa.select(*cols, other_table.c.region)
                    .select_from(pix_table.join(other_table, join_on))
                    .where(pixel_col.in_(part))
                    .distinct()
                )
                for r in conn.execute(stmt):
                    found[tuple(r[:-1])] = bytes(r[-1])
        return list(found), list(found.values())

    def _pixel_table(self, element: str) -> tuple[str, int] | None:
        for ov in self.universe.config.overlaps:
            level = self.universe[ov.b].skypix_level
            if ov.a == element and level is not None:
                return ov.table, level
        return None

    def _region_pairs(
        self,
        conn: sa.Connection,
        el: DimensionElement,
        items: list[tuple[Any, Region]],
        other: DimensionElement,
        memberships: dict[int, list[tuple[Any, int]]],
    ) -> list[tuple[Hashable, Hashable]]:
        mine, theirs = self._pixel_table(el.name), self._pixel_table(other.name)
        other_table = self.schema.elements[other.name]
        if mine is None or theirs is None or mine[1] != theirs[1]:
            rows = conn.execute(
                sa.select(*[other_table.c[d] for d in other.required], other_table.c.region).where(
                    other_table.c.region.is_not(None)
                )
            ).all()
            right = [(tuple(r[:-1]), Region.decode(bytes(r[-1]))) for r in rows]
            return _overlaps.region_pairs(items, right)
        pix_table = self.schema.overlaps[theirs[0]]
        pixel_col = pix_table.c[_skypix_name(self.universe, theirs[1])]
        pixels = sorted({p for _, p in memberships[mine[1]]})
        by_pixel: dict[int, list[Hashable]] = defaultdict(list)
        regions: dict[Hashable, Region] = {}
        key_cols = [pix_table.c[d] for d in other.required]
        join_on = sa.and_(*[pix_table.c[d] == other_table.c[d] for d in other.required])
        for part in chunks(pixels):
            stmt = (
                sa.select(*key_cols, pixel_col, other_table.c.region)
                .select_from(pix_table.join(other_table, join_on))
                .where(pixel_col.in_(part))
            )
            for r in conn.execute(stmt):
                key = tuple(r[: len(key_cols)])
                by_pixel[r[len(key_cols)]].append(key)
                if key not in regions:
                    regions[key] = Region.decode(bytes(r[-1]))
        return _overlaps.candidate_pairs(items, memberships[mine[1]], by_pixel, regions)

    def _insert_pairs(
        self,
        conn: sa.Connection,
        table_name: str,
        a: DimensionElement,
        b: DimensionElement,
        pairs: Sequence[tuple[Any, Any]],
    ) -> None:
        if not pairs:
            return
        rows = {(*ka, *(kb if isinstance(kb, tuple) else (kb,))): None for ka, kb in pairs}
        self._insert_rows(conn, table_name, a, b, list(rows))

    def _insert_rows(
        self,
        conn: sa.Connection,
        table_name: str,
        a: DimensionElement,
        b: DimensionElement,
        rows: list[tuple[Any, ...]],
    ) -> None:
        """Insert overlap rows given as ``(*a key, *b key)`` tuples (driver level)."""
        if not rows:
            return
        table = self.schema.overlaps[table_name]
        names = list(a.required) + [d for d in (b.required if b.has_table else (b.name,))]
        # Side a and b may share leading dimensions (instrument, skymap): keep the first.
        keep = [i for i, n in enumerate(names) if n not in names[:i]]
        cols = [names[i] for i in keep]
        if len(keep) != len(names):
            rows = [tuple(r[i] for i in keep) for r in rows]
        insert_rows(conn, table, cols, rows)


def _skypix_name(universe: DimensionUniverse, level: int) -> str:
    for el in universe.elements:
        if el.skypix_level == level:
            return el.name
    raise DimensionError(f"no skypix dimension of level {level}")
