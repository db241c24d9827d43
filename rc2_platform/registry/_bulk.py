"""Driver-level bulk writes and reads: the hot paths below SQLAlchemy's per-row processing.

Rows are plain tuples of driver-ready values. PostgreSQL gets ``COPY ... FROM STDIN``
through the psycopg 3 connection of the current transaction; SQLite and MariaDB get one
``executemany`` of a prepared ``INSERT`` (pymysql folds it into multi-row VALUES).
UUIDs are passed as the backend stores them: native on PostgreSQL, 32-character hex
(``sa.Uuid``'s CHAR(32)) elsewhere.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

#: Rows per executemany / COPY batch.
BATCH = 50_000

_SAFE = uuid.SafeUUID.unknown
_new = object.__new__
_set = object.__setattr__


def uuid_from_hex(value: str) -> uuid.UUID:
    """A UUID from 32 hex digits, without ``uuid.UUID.__init__``'s parsing overhead."""
    u = _new(uuid.UUID)
    _set(u, "int", int(value, 16))
    _set(u, "is_safe", _SAFE)
    return u


def random_uuids(n: int) -> list[uuid.UUID]:
    """``n`` random version-4 UUIDs (as ``uuid.uuid4()``), from one ``os.urandom`` call."""
    data = os.urandom(16 * n)
    clear = ~((0xF000 << 64) | (0xC000 << 48))
    mark = (0x4000 << 64) | (0x8000 << 48)
    out = []
    for i in range(0, 16 * n, 16):
        u = _new(uuid.UUID)
        _set(u, "int", (int.from_bytes(data[i : i + 16], "big") & clear) | mark)
        _set(u, "is_safe", _SAFE)
        out.append(u)
    return out


def uuid_to_db(dialect: sa.Dialect) -> Callable[[uuid.UUID], Any]:
    """The function turning a UUID into the value the driver binds for ``sa.Uuid``."""
    if dialect.name == "postgresql":
        return lambda u: u
    return lambda u: u.hex


def uuid_from_db(dialect: sa.Dialect) -> Callable[[Any], uuid.UUID]:
    """The function turning a raw driver value of a ``sa.Uuid`` column into a UUID."""
    if dialect.name == "postgresql":
        return lambda v: v if isinstance(v, uuid.UUID) else uuid.UUID(str(v))
    return lambda v: v if isinstance(v, uuid.UUID) else uuid_from_hex(v.replace("-", ""))


def _placeholders(dialect: sa.Dialect, n: int) -> str:
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    return ", ".join([mark] * n)


def insert_rows(
    conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert driver-ready ``rows`` (tuples in ``columns`` order) into ``table``.

    Runs in the connection's current transaction. Constraint violations surface as
    ``sqlalchemy.exc.IntegrityError`` on every backend (COPY errors are wrapped).
    """
    if not rows:
        return
    dialect = conn.dialect
    if dialect.name == "postgresql":
        _copy_rows(conn, table, columns, rows)
        return
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({_placeholders(dialect, len(columns))})"
    )
    for i in range(0, len(rows), BATCH):
        part = rows[i : i + BATCH]
        conn.exec_driver_sql(sql, part if isinstance(part, list) else list(part))


def _copy_rows(
    conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    raw = conn.connection.dbapi_connection
    assert raw is not None
    dbapi = conn.dialect.dbapi
    assert dbapi is not None
    sql = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    try:
        with raw.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[attr-defined]
            write = copy.write_row
            for row in rows:
                write(row)
    except dbapi.IntegrityError as exc:
        raise sa.exc.IntegrityError(sql, None, exc) from exc


def select_raw(conn: sa.Connection, stmt: sa.Select[Any]) -> list[tuple[Any, ...]]:
    """Run ``stmt`` on the driver cursor and return raw tuples (no result processing).

    Bound values must not need SQLAlchemy bind processors (ints, strings).
    """
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    positional = compiled.positiontup
    args: Any = params if positional is None else tuple(params[k] for k in positional)
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cur = raw.cursor()
    try:
        cur.execute(compiled.string, args)
        return list(cur.fetchall())
    finally:
        cur.close()
