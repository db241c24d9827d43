"""Dimension records: conversion, batched inserts, sync (overlaps: ``_overlaps.py``)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from lsst.sphgeom import Region

from rc2_platform.core.names import INT64_MAX, INT64_MIN, show
from rc2_platform.core.timespan import Timespan
from rc2_platform.errors import ConflictingDefinitionError, DimensionError, DimensionValueError
from rc2_platform.registry._bulk import chunks
from rc2_platform.registry._dialect import insert_rows, savepoint
from rc2_platform.registry._overlaps import OverlapWriter
from rc2_platform.registry.dimensions import DimensionElement, DimensionUniverse
from rc2_platform.registry.schema import RegistrySchema


def _metadata_problem(kind: str, length: int | None, value: Any) -> str | None:
    """Why ``value`` cannot be stored in a metadata column of ``kind``, or None."""
    if value is None:
        return None
    if kind == "string":
        if not isinstance(value, str):
            return f"it is a {type(value).__name__}, not a string"
        if "\x00" in value:
            return "it contains NUL"
        if length is not None and len(value) > length:
            return f"it has {len(value)} characters, more than {length}"
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return f"it is a {type(value).__name__}, not an integer"
        if not INT64_MIN <= int(value) <= INT64_MAX:
            return "it does not fit in 64 bits"
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return f"it is a {type(value).__name__}, not a number"
        if math.isinf(value):
            return "it is infinite"
    return None


class RecordManager:
    """Insert, sync and read dimension records of one schema."""

    def __init__(self, schema: RegistrySchema):
        self.schema = schema
        self.universe: DimensionUniverse = schema.universe
        self.overlaps = OverlapWriter(schema)

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
        for m in el.metadata:
            problem = _metadata_problem(m.type, m.length, row[m.name])
            if problem is not None:
                raise DimensionValueError(
                    f"{el.name} record {self.key_of(el, row)}: field {m.name!r} "
                    f"{show(row[m.name])} is not allowed: {problem}"
                )
        if el.has_region:
            row["region"] = self._region_bytes(el, row, record.get("region"))
        if el.has_timespan:
            ts = record.get("timespan")
            if ts is not None and not isinstance(ts, Timespan):
                raise DimensionValueError(
                    f"{el.name} record {self.key_of(el, row)}: 'timespan' must be a Timespan"
                )
            row["timespan_begin"] = None if ts is None else ts.begin_nsec
            row["timespan_end"] = None if ts is None else ts.end_nsec
        return row

    def _region_bytes(
        self, el: DimensionElement, row: Mapping[str, Any], region: Any
    ) -> bytes | None:
        """A region as stored: sphgeom Region objects are encoded, encoded bytes kept."""
        if region is None:
            return None
        if isinstance(region, Region):
            return bytes(region.encode())
        if isinstance(region, bytes | bytearray | memoryview) and len(region) > 1:
            return bytes(region)
        raise DimensionValueError(
            f"{el.name} record {self.key_of(el, row)}: 'region' must be an lsst.sphgeom "
            f"Region or its encoded bytes, not {type(region).__name__}"
        )

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
            with savepoint(conn):
                names = list(rows[0])
                insert_rows(conn, table, names, [tuple(r[c] for c in names) for r in rows])
        except sa.exc.IntegrityError as exc:
            self.raise_insert_error(conn, el, rows, exc)
        if el.has_region:
            self.overlaps.insert_overlaps(
                conn, el, [r for r in rows if r.get("region") is not None]
            )
        return len(rows)

    def insert_columns(
        self,
        conn: sa.Connection,
        element: str,
        columns: Mapping[str, Any],
        skip_existing: bool = False,
    ) -> int:
        """Columnar insert: one sequence (or numpy array, or scalar) per column.

        Regions must be encoded bytes (``region``), timespans given as
        ``timespan_begin``/``timespan_end`` TAI nanoseconds. Returns rows inserted.
        """
        el = self.universe[element]
        if not el.has_table:
            raise DimensionError(f"{element!r} is a sky pixelization; it has no records to insert")
        names, values = self._column_lists(el, columns)
        n = len(values[0]) if values else 0
        if n == 0:
            return 0
        key_idx = [names.index(d) for d in el.required]
        keys = list(zip(*[values[i] for i in key_idx], strict=True))
        rows = list(zip(*values, strict=True))
        if len(set(keys)) != n:
            return self.insert(
                conn, element, [dict(zip(names, r, strict=True)) for r in rows], skip_existing
            )
        if skip_existing:
            existing = self.existing_rows(conn, el, keys)
            if existing:
                keep = [i for i, k in enumerate(keys) if k not in existing]
                rows, keys = [rows[i] for i in keep], [keys[i] for i in keep]
        if not rows:
            return 0
        table = self.schema.elements[element]
        try:
            with savepoint(conn):
                insert_rows(conn, table, names, rows)
        except sa.exc.IntegrityError as exc:
            dict_rows = [dict(zip(names, r, strict=True)) for r in rows]
            self.raise_insert_error(conn, el, dict_rows, exc)
        if el.has_region and "region" in names:
            r = names.index("region")
            present = [i for i, row in enumerate(rows) if row[r] is not None]
            self.overlaps.insert_region_overlaps(
                conn, el, [keys[i] for i in present], [rows[i][r] for i in present]
            )
        return len(rows)

    def _column_lists(
        self, el: DimensionElement, columns: Mapping[str, Any]
    ) -> tuple[list[str], list[list[Any]]]:
        """Validated column names and value lists (scalars broadcast, numpy -> Python)."""
        allowed = set(el.columns) | ({"region"} if el.has_region else set())
        if el.has_timespan:
            allowed |= {"timespan_begin", "timespan_end"}
        unknown = set(columns) - allowed
        missing = [d for d in el.required if d not in columns]
        if unknown or missing:
            raise DimensionError(
                f"{el.name} columns: unknown {sorted(unknown)}, missing key(s) {missing}; "
                f"allowed: {sorted(allowed)}"
            )
        n = max((len(v) for v in columns.values() if not _is_scalar(v)), default=1)
        names, values = [], []
        for name, col in columns.items():
            if _is_scalar(col):
                vals = [col] * n
            else:
                vals = col.tolist() if hasattr(col, "tolist") else list(col)
            if len(vals) != n:
                raise DimensionError(
                    f"{el.name} column {name!r} has {len(vals)} values, expected {n}"
                )
            if name in el.required or name in el.implied:
                vals = self._check_key_values(name, vals, required=name in el.required)
            elif name == "region":
                for v in vals:
                    if v is not None and not (isinstance(v, bytes) and len(v) > 1):
                        raise DimensionValueError(
                            f"{el.name} column 'region' must hold encoded region bytes "
                            f"(rc2_platform.geometry.encode_quads), not {type(v).__name__}"
                        )
            names.append(name)
            values.append(vals)
        return names, values

    def _check_key_values(self, dim: str, vals: list[Any], required: bool) -> list[Any]:
        kinds = {type(v) for v in vals}
        want = int if self.universe.key_type(dim) == "int" else str
        if kinds == {want} and want is int and min(vals) >= INT64_MIN and max(vals) <= INT64_MAX:
            return vals
        if not required:
            kinds.discard(type(None))
        checked = {
            v: (None if v is None and not required else self.universe.coerce_value(dim, v))
            for v in set(vals)
        }
        return [checked[v] for v in vals]

    def raise_insert_error(
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


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) or getattr(value, "ndim", None) == 0


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
