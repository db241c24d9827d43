"""Bulk loads of columnar dimension records: numpy columns straight into the database.

Used by :meth:`Registry.insert_dimension_columns` for large batches (a whole sky map:
1.5 M patches and ~3.4 M patch x htm7 overlap rows). Columns stay numpy arrays
end to end, without one Python tuple per row:

- **SQLite**: the integer columns are bit-packed into one int64 per row and sent as
  one JSON array, unpacked by ``json_each`` inside SQLite (one ``INSERT ... SELECT``
  per chunk); a fixed-size blob column (encoded regions) is sent as one blob and cut
  with ``substr``. About twice as fast as ``executemany`` of tuples.
- **PostgreSQL**: one binary ``COPY`` buffer per chunk, built as a numpy structured
  array (row header, field lengths and big-endian values interleaved).
- Anything else (MariaDB, negative or huge ints, variable-size blobs, text columns
  that vary per row) falls back to the driver-level ``executemany``/COPY of tuples.

:class:`BulkLoad` defers secondary indexes (and, on PostgreSQL, foreign keys of the
element's own table, re-validated set-wise when they are added back) while a *fresh*
table is loaded inside one transaction; DDL is transactional on SQLite and PostgreSQL,
so a failure rolls it back with the rows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from rc2_platform.errors import ConflictingDefinitionError, DimensionError, DimensionValueError
from rc2_platform.geometry import polygon_overlaps as _spatial
from rc2_platform.registry._bulk import fixed_blobs, is_int_array
from rc2_platform.registry._dialect import backend, insert_rows, savepoint
from rc2_platform.registry.dimensions import DimensionElement

if TYPE_CHECKING:
    from rc2_platform.registry._records import RecordManager

__all__ = ["OVERLAPS_PREFIX", "BulkLoad", "Column", "insert_column_chunks", "write_columns"]

#: A column of a bulk write: a numpy integer array, a scalar broadcast to every row,
#: or a list of equal-length ``bytes`` (encoded regions).
Column = Any


def write_columns(
    conn: sa.Connection, table: sa.Table, columns: Mapping[str, Column], n: int
) -> None:
    """Insert ``n`` rows given column-wise (see :data:`Column`) into ``table``."""
    if n == 0:
        return
    if backend(conn).write_columns(conn, table, columns, n):
        return
    names = list(columns)
    lists = [_as_list(columns[c], n) for c in names]
    insert_rows(conn, table, names, list(zip(*lists, strict=True)))


def _as_list(col: Column, n: int) -> list[Any]:
    if isinstance(col, np.ndarray):
        return list(col.tolist())
    if isinstance(col, list):
        return col
    return [col] * n


class BulkLoad:
    """Defer secondary indexes (and PostgreSQL foreign keys) of tables loaded from empty.

    Parameters
    ----------
    conn : sqlalchemy.Connection
        The connection of the enclosing transaction.
    tables : Sequence[sqlalchemy.Table]
        Tables about to receive a large load. Only the ones that are empty now are
        touched, and only on SQLite and PostgreSQL (transactional DDL; MariaDB would
        commit implicitly).
    defer_fks : Sequence[sqlalchemy.Table]
        Tables (of ``tables``) whose own foreign keys are dropped during the load on
        PostgreSQL; adding them back validates every row in one set-wise query.

    Notes
    -----
    While the transaction is open the deferred tables are locked (PostgreSQL takes
    ``ACCESS EXCLUSIVE`` for ``DROP INDEX``), so concurrent readers of those tables
    wait for the load to commit. Only empty tables are deferred, i.e. a fresh sky map.
    """

    def __init__(
        self, conn: sa.Connection, tables: Sequence[sa.Table], defer_fks: Sequence[sa.Table] = ()
    ):
        self.conn = conn
        self.indexes: list[sa.Index] = []
        self.fks: list[sa.ForeignKeyConstraint] = []
        be = backend(conn)
        if not be.transactional_ddl:
            return
        for table in tables:
            if conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first():
                continue
            self.indexes.extend(table.indexes)
            if be.defers_foreign_keys and table in defer_fks:
                self.fks.extend(table.foreign_key_constraints)

    def __enter__(self) -> BulkLoad:
        for index in self.indexes:
            index.drop(self.conn)
        for fk in self.fks:
            self.conn.execute(sa.schema.DropConstraint(fk))
        return self

    def __exit__(self, exc_type: Any, *args: Any) -> None:
        if exc_type is not None:
            return  # the transaction rolls back, DDL included
        for index in self.indexes:
            index.create(self.conn)
        for fk in self.fks:
            self.conn.execute(sa.schema.AddConstraint(fk))


# --- columnar records ---------------------------------------------------------------

OVERLAPS_PREFIX = "overlaps:"


def insert_column_chunks(
    mgr: RecordManager,
    conn: sa.Connection,
    element: str,
    chunks: Iterable[Mapping[str, Any]],
    skip_existing: bool,
    stream: bool,
) -> int:
    """Insert a stream of columnar chunks of ``element`` (one transaction); rows inserted.

    A chunk maps column names to numpy arrays, scalars or lists, plus optional
    precomputed sky-pixel overlaps under ``"overlaps:<skypix>"`` as ``(row, pixel)``
    arrays. With ``stream`` (an iterable of chunks) a fresh table is loaded with its
    secondary indexes deferred (:class:`BulkLoad`).
    """
    el = mgr.universe[element]
    if not el.has_table:
        raise DimensionError(f"{element!r} is a sky pixelization; it has no records to insert")
    table = mgr.schema.elements[element]
    pix_tables = [
        mgr.schema.overlaps[ov.table]
        for ov in mgr.universe.config.overlaps
        if ov.a == element and mgr.universe[ov.b].skypix_level is not None
    ]
    fresh = conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first() is None
    others = _other_region_tables(mgr, element)
    others_empty = all(
        conn.execute(sa.select(sa.literal(1)).select_from(t).limit(1)).first() is None
        for t in others
    )
    load = BulkLoad(conn, [table, *pix_tables], [table]) if stream else None
    n = 0
    with load if load is not None else contextlib.nullcontext():
        for chunk in chunks:
            pre = {
                k[len(OVERLAPS_PREFIX) :]: v
                for k, v in chunk.items()
                if k.startswith(OVERLAPS_PREFIX)
            }
            cols = {k: v for k, v in chunk.items() if not k.startswith(OVERLAPS_PREFIX)}
            done = None
            if not (skip_existing and not fresh):
                done = insert_arrays(mgr, conn, el, cols, pre, others_empty)
            if done is None:
                done = mgr.insert_columns(conn, element, cols, skip_existing and not fresh)
            n += done
    return n


def _other_region_tables(mgr: RecordManager, element: str) -> list[sa.Table]:
    out = []
    for ov in mgr.universe.config.overlaps:
        if element in (ov.a, ov.b) and mgr.universe[ov.b].skypix_level is None:
            out.append(mgr.schema.elements[ov.b if ov.a == element else ov.a])
    return out


def _prepare(
    mgr: RecordManager, el: DimensionElement, columns: Mapping[str, Any]
) -> tuple[dict[str, Column], int] | None:
    """Validated bulk columns and the row count, or None if not eligible for the array path."""
    allowed = set(el.columns) | ({"region"} if el.has_region else set())
    if el.has_timespan:
        allowed |= {"timespan_begin", "timespan_end"}
    missing = [d for d in el.required if d not in columns]
    if set(columns) - allowed or missing:
        return None  # the generic path raises the detailed error
    lengths = {len(v) for v in columns.values() if isinstance(v, np.ndarray | list)}
    if len(lengths) != 1:
        return None
    n = lengths.pop()
    out: dict[str, Column] = {}
    for name, col in columns.items():
        if name == "region":
            if not isinstance(col, list) or fixed_blobs(col) is None:
                return None
            out[name] = col
        elif isinstance(col, np.ndarray):
            if not is_int_array(col) or col.ndim != 1:
                return None
            if (name in el.required or name in el.implied) and mgr.universe.key_type(name) != "int":
                return None
            out[name] = col.astype(np.int64, copy=False)
        elif isinstance(col, str | int) and not isinstance(col, bool):
            out[name] = (
                mgr.universe.coerce_value(name, col)
                if name in el.required or name in el.implied
                else col
            )
        else:
            return None
    return out, n


def insert_arrays(
    mgr: RecordManager,
    conn: sa.Connection,
    el: DimensionElement,
    columns: Mapping[str, Any],
    precomputed: Mapping[str, tuple[Any, Any]],
    others_empty: bool,
) -> int | None:
    """Insert new records given as numpy columns; None if the chunk needs the generic path."""
    prepared = _prepare(mgr, el, columns)
    if prepared is None:
        return None
    cols, n = prepared
    if n == 0:
        return 0
    _check_unique(el, cols, n)
    _check_parents(mgr, conn, el, cols)
    table = mgr.schema.elements[el.name]
    try:
        with savepoint(conn):
            write_columns(conn, table, cols, n)
    except sa.exc.IntegrityError as exc:
        rows = [
            dict(zip(cols, r, strict=True))
            for r in zip(*[_as_list(v, n) for v in cols.values()], strict=True)
        ]
        mgr.raise_insert_error(conn, el, rows, exc)
    if "region" in cols:
        _insert_overlaps(mgr, conn, el, cols, n, precomputed, others_empty)
    return n


def _check_unique(el: DimensionElement, cols: Mapping[str, Column], n: int) -> None:
    arrays = [cols[d] for d in el.required if isinstance(cols[d], np.ndarray)]
    if not arrays or n < 2:
        if n > 1 and not arrays:
            raise ConflictingDefinitionError(f"{el.name}: {n} rows share one key in one insert")
        return
    order = np.lexsort(arrays[::-1])
    same = np.ones(n - 1, dtype=bool)
    for a in arrays:
        s = a[order]
        same &= s[1:] == s[:-1]
    if same.any():
        i = int(order[int(np.argmax(same))])
        key = {
            d: (int(cols[d][i]) if isinstance(cols[d], np.ndarray) else cols[d])
            for d in el.required
        }
        raise ConflictingDefinitionError(f"{el.name} key {key} appears twice in one insert")


def _check_parents(
    mgr: RecordManager, conn: sa.Connection, el: DimensionElement, cols: Mapping[str, Column]
) -> None:
    """Every referenced parent record exists (set-wise: one query per parent element)."""
    deps = el.required[:-1] + el.implied if el.is_dimension else el.required + el.implied
    for dep in deps:
        dep_el = mgr.universe[dep]
        if not dep_el.has_table or dep not in cols:
            continue
        parts = [cols[d] for d in dep_el.required]
        arrays = [p for p in parts if isinstance(p, np.ndarray)]
        if arrays:
            uniq = np.unique(np.stack(arrays, axis=1), axis=0).tolist()
            keys = []
            for u in uniq:
                it = iter(u)
                keys.append(tuple(next(it) if isinstance(p, np.ndarray) else p for p in parts))
        else:
            keys = [tuple(parts)]
        found = mgr.existing_rows(conn, dep_el, keys)
        missing = sorted(set(keys) - set(found), key=repr)
        if missing:
            raise DimensionValueError(
                f"{el.name} records refer to unknown {dep} value(s) "
                f"{[dict(zip(dep_el.required, m, strict=True)) for m in missing[:5]]}; "
                f"insert the {dep} records first"
            )


def _insert_overlaps(
    mgr: RecordManager,
    conn: sa.Connection,
    el: DimensionElement,
    cols: Mapping[str, Column],
    n: int,
    precomputed: Mapping[str, tuple[Any, Any]],
    others_empty: bool,
) -> None:
    skypix = [
        (ov, mgr.universe[ov.b])
        for ov in mgr.universe.config.overlaps
        if ov.a == el.name and mgr.universe[ov.b].skypix_level is not None
    ]
    verts = None
    if not others_empty or any(other.name not in precomputed for _, other in skypix):
        verts = _spatial.polygon_vertices(cols["region"])
        if verts is None:  # not all convex polygons of one size: the generic path
            keys = list(zip(*[_as_list(cols[d], n) for d in el.required], strict=True))
            mgr.overlaps.insert_region_overlaps(conn, el, keys, cols["region"])
            return
    pixels: dict[int, tuple[Any, Any]] = {}
    for ov, other in skypix:
        assert other.skypix_level is not None
        if other.name in precomputed:
            row, pix = (np.asarray(a, dtype=np.int64) for a in precomputed[other.name])
        else:
            assert verts is not None
            row, pix = _spatial.pixel_overlaps(verts, other.skypix_level)
        pixels[other.skypix_level] = (row, pix)
        out: dict[str, Column] = {
            d: (cols[d][row] if isinstance(cols[d], np.ndarray) else cols[d]) for d in el.required
        }
        out[other.name] = pix
        write_columns(conn, mgr.schema.overlaps[ov.table], out, len(row))
    if others_empty:
        return
    key_lists = [_as_list(cols[d], n) for d in el.required]
    keys = list(zip(*key_lists, strict=True))
    mgr.overlaps.insert_region_region_overlaps(conn, el, keys, verts, pixels)
