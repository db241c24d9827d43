"""Dimension records: batched inserts, sync, and materialized spatial overlaps."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from lsst.sphgeom import Region

from rc2_platform.errors import ConflictingDefinitionError, DimensionError, DimensionValueError
from rc2_platform.registry import _overlaps
from rc2_platform.registry.dimensions import DimensionElement, DimensionUniverse
from rc2_platform.registry.schema import RegistrySchema
from rc2_platform.registry.timespan import Timespan

#: Rows per IN-list chunk (well under every backend's bind-parameter limit).
CHUNK = 5_000


def chunks(seq: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items."""
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


class RecordManager:
    """Insert, sync and read dimension records of one schema."""

    def __init__(self, schema: RegistrySchema):
        self.schema = schema
        self.universe: DimensionUniverse = schema.universe

    # --- conversion -------------------------------------------------------------------

    def to_row(self, el: DimensionElement, record: Mapping[str, Any]) -> dict[str, Any]:
        """Validate one record and convert it to a table row."""
        allowed = set(el.columns) | ({"region"} if el.has_region else set())
        if el.has_timespan:
            allowed |= {"timespan"}
        unknown = set(record) - allowed
        if unknown:
            raise DimensionError(
                f"{el.name} record {dict(record)!r} has unknown field(s) {sorted(unknown)}; "
                f"allowed: {sorted(allowed)}"
            )
        missing = [d for d in el.required if d not in record]
        if missing:
            raise DimensionError(f"{el.name} record {dict(record)!r} lacks key field(s) {missing}")
        row: dict[str, Any] = {c: record.get(c) for c in el.columns}
        for d in el.required + el.implied:
            if row[d] is not None or d in el.required:
                row[d] = self.universe.coerce_value(d, row[d])
        if el.has_region:
            region = record.get("region")
            if region is not None and not isinstance(region, Region):
                raise DimensionValueError(
                    f"{el.name} record {self.key_of(el, row)}: 'region' must be an lsst.sphgeom "
                    f"Region, not {type(region).__name__}"
                )
            row["region"] = None if region is None else bytes(region.encode())
        if el.has_timespan:
            ts = record.get("timespan")
            if ts is not None and not isinstance(ts, Timespan):
                raise DimensionValueError(
                    f"{el.name} record {self.key_of(el, row)}: 'timespan' must be a Timespan"
                )
            row["timespan_begin"] = None if ts is None else ts.begin_nsec
            row["timespan_end"] = None if ts is None else ts.end_nsec
        return row

    def from_row(
        self, el: DimensionElement, row: Mapping[str, Any] | sa.RowMapping
    ) -> dict[str, Any]:
        """Convert a table row back to a record (Region and Timespan objects)."""
        out = {c: row[c] for c in el.columns}
        if el.has_region:
            out["region"] = None if row["region"] is None else Region.decode(bytes(row["region"]))
        if el.has_timespan:
            b, e = row["timespan_begin"], row["timespan_end"]
            out["timespan"] = None if b is None else Timespan(int(b), int(e))
        return out

    @staticmethod
    def key_of(el: DimensionElement, row: Mapping[str, Any] | sa.RowMapping) -> tuple[Any, ...]:
        """The primary-key tuple of a row."""
        return tuple(row[d] for d in el.required)

    # --- reads ------------------------------------------------------------------------

    def existing_rows(
        self, conn: sa.Connection, el: DimensionElement, keys: Sequence[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], dict[str, Any]]:
        """Rows already stored for the given primary keys (one IN query per chunk)."""
        table = self.schema.elements[el.name]
        last = el.required[-1]
        wanted = set(keys)
        out: dict[tuple[Any, ...], dict[str, Any]] = {}
        values = sorted({k[-1] for k in wanted}, key=repr)
        for part in chunks(values):
            for row in conn.execute(sa.select(table).where(table.c[last].in_(part))).mappings():
                key = self.key_of(el, row)
                if key in wanted:
                    out[key] = dict(row)
        return out

    # --- inserts ----------------------------------------------------------------------

    def insert(
        self,
        conn: sa.Connection,
        element: str,
        records: Sequence[Mapping[str, Any]],
        skip_existing: bool = False,
    ) -> int:
        """Insert records (and their overlaps); return the number of new rows."""
        el = self.universe[element]
        if not el.has_table:
            raise DimensionError(f"{element!r} is a sky pixelization; it has no records to insert")
        rows = [self.to_row(el, r) for r in records]
        if not rows:
            return 0
        keys = [self.key_of(el, r) for r in rows]
        if len(set(keys)) != len(keys):
            seen: set[tuple[Any, ...]] = set()
            dup = next(k for k in keys if k in seen or seen.add(k))  # type: ignore[func-returns-value]
            raise ConflictingDefinitionError(
                f"{element} key {dict(zip(el.required, dup, strict=True))} appears twice in one insert"
            )
        if skip_existing:
            existing = self.existing_rows(conn, el, keys)
            rows = [r for r, k in zip(rows, keys, strict=True) if k not in existing]
            if not rows:
                return 0
        table = self.schema.elements[element]
        try:
            with conn.begin_nested() if conn.dialect.name == "postgresql" else _null():
                conn.execute(table.insert(), rows)
        except sa.exc.IntegrityError as exc:
            self._raise_insert_error(conn, el, rows, exc)
        if el.has_region:
            self.insert_overlaps(conn, el, [r for r in rows if r.get("region") is not None])
        return len(rows)

    def _raise_insert_error(
        self, conn: sa.Connection, el: DimensionElement, rows: list[dict[str, Any]], exc: Exception
    ) -> None:
        keys = [self.key_of(el, r) for r in rows]
        existing = self.existing_rows(conn, el, keys)
        if existing:
            key = next(iter(existing))
            raise ConflictingDefinitionError(
                f"{el.name} record {dict(zip(el.required, key, strict=True))} already exists; "
                "pass skip_existing=True or use sync_dimension_record"
            ) from exc
        for dep in el.required[:-1] + el.implied if el.is_dimension else el.required + el.implied:
            dep_el = self.universe[dep]
            if not dep_el.has_table:
                continue
            dep_keys = {
                tuple(r[d] for d in dep_el.required) for r in rows if r.get(dep) is not None
            }
            found = self.existing_rows(conn, dep_el, list(dep_keys))
            missing = sorted(dep_keys - set(found), key=repr)
            if missing:
                raise DimensionValueError(
                    f"{el.name} records refer to unknown {dep} value(s) "
                    f"{[dict(zip(dep_el.required, m, strict=True)) for m in missing[:5]]}; "
                    f"insert the {dep} records first"
                ) from exc
        raise DimensionValueError(f"could not insert {el.name} records: {exc.args[0]}") from exc

    def sync(self, conn: sa.Connection, element: str, record: Mapping[str, Any]) -> bool:
        """Insert ``record`` unless an identical one exists; True if inserted.

        Raises ConflictingDefinitionError naming the differing fields otherwise.
        """
        el = self.universe[element]
        row = self.to_row(el, record)
        key = self.key_of(el, row)
        old = self.existing_rows(conn, el, [key]).get(key)
        if old is None:
            self.insert(conn, element, [record])
            return True
        diffs = [c for c in row if _differs(old.get(c), row[c])]
        if diffs:
            detail = ", ".join(f"{c}: {old.get(c)!r} != {row[c]!r}" for c in diffs if c != "region")
            if "region" in diffs:
                detail = (detail + ", " if detail else "") + "region differs"
            raise ConflictingDefinitionError(
                f"{element} record {dict(zip(el.required, key, strict=True))} already exists "
                f"with different values ({detail})"
            )
        return False

    # --- overlaps ---------------------------------------------------------------------

    def insert_overlaps(
        self, conn: sa.Connection, el: DimensionElement, rows: list[dict[str, Any]]
    ) -> None:
        """Materialize every configured overlap involving the new ``rows`` of ``el``."""
        if not rows:
            return
        items = [(self.key_of(el, r), Region.decode(r["region"])) for r in rows]
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
        pixel_col = pix_table.c[_skypix_name(self, theirs[1])]
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
        table = self.schema.overlaps[table_name]
        a_dims, b_dims = a.required, (b.required if b.has_table else (b.name,))
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        for ka, kb in pairs:
            row = dict(zip(a_dims, ka, strict=True))
            row.update(zip(b_dims, kb if isinstance(kb, tuple) else (kb,), strict=True))
            rows[tuple(row[c.name] for c in table.columns)] = row
        # Overlap rows of a re-inserted record may exist already (skip_existing inserts).
        conn.execute(table.insert(), list(rows.values()))


def _skypix_name(mgr: RecordManager, level: int) -> str:
    for el in mgr.universe.elements:
        if el.skypix_level == level:
            return el.name
    raise DimensionError(f"no skypix dimension of level {level}")


def _differs(old: Any, new: Any) -> bool:
    if isinstance(old, float) or isinstance(new, float):
        return (
            old is None
            or new is None
            or abs(float(old) - float(new)) > 1e-9 * max(1.0, abs(float(new)))
        )
    if isinstance(old, memoryview):
        old = bytes(old)
    return bool(old != new)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: Any) -> None:
        return None
