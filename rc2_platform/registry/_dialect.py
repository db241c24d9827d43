"""Every difference between the registry's database backends, behind one function.

The rest of the registry never compares dialect names: it asks the :class:`Backend` of
its connection (:func:`backend`) what to do, the way SQLAlchemy's own compliance suite
describes backends by capability flags. What differs:

=============================  ==================  =====================  ================
                               SQLite              PostgreSQL             MariaDB / MySQL
=============================  ==================  =====================  ================
engine setup                   pragmas, WAL,       psycopg 3 by default,  utf8mb4, pool
                               BEGIN IMMEDIATE     pool
``sa.Uuid`` bound as           32 hex digits       ``uuid.UUID``          32 hex digits
bulk rows                      multi-row VALUES    ``COPY`` (binary)      ``executemany``
bulk numpy columns             packed JSON array   binary ``COPY`` buffer tuples
rows by many UUIDs             ``json_each(?)``    ``= ANY(uuid[])``      ``IN`` lists
an error in a transaction      recoverable         aborts it: SAVEPOINT   recoverable
DDL in a transaction           yes                 yes                    commits: never
stale statistics               not tracked         ``pg_stat`` views      InnoDB's own
``ANALYZE``                    one per table       one statement          ``ANALYZE TABLE``
autocommit driver connection   already             ``autocommit = True``  ``autocommit(True)``
=============================  ==================  =====================  ================

The classes live in ``_backend_base`` (the generic :class:`Backend`), ``_backend_sqlite``
and ``_backend_servers`` (PostgreSQL, MariaDB / MySQL). The rest of the registry imports
what it needs from this module only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

from rc2_platform.registry._backend_base import (
    CLUSTERED_PRIMARY_KEY,
    SCHEMA_LOCK_KEY,
    WRITE_TRANSACTION,
    Backend,
    big_identity_type,
)
from rc2_platform.registry._backend_servers import MysqlBackend, PostgresBackend
from rc2_platform.registry._backend_sqlite import SqliteBackend

__all__ = [
    "CLUSTERED_PRIMARY_KEY",
    "SCHEMA_LOCK_KEY",
    "WRITE_TRANSACTION",
    "Backend",
    "MysqlBackend",
    "PostgresBackend",
    "SqliteBackend",
    "backend",
    "backend_for_url",
    "backend_named",
    "big_identity_type",
    "insert_rows",
    "savepoint",
]

_BACKENDS: dict[str, Backend] = {
    name: cls() for cls in (SqliteBackend, PostgresBackend, MysqlBackend) for name in cls.names
}


@lru_cache(maxsize=16)
def backend_named(name: str) -> Backend:
    """The backend of a SQLAlchemy backend name (generic for others, e.g. Oracle)."""
    return _BACKENDS.get(name, Backend())


def backend(dialect: sa.Dialect | sa.Connection | sa.Engine) -> Backend:
    """The backend of a dialect, connection or engine."""
    if not isinstance(dialect, sa.Dialect):
        dialect = dialect.dialect
    return backend_named(dialect.name)


def backend_for_url(url: sa.URL) -> Backend:
    """The backend a URL names."""
    return backend_named(url.get_backend_name())


def insert_rows(
    conn: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    binary: bool = False,
) -> None:
    """Insert driver-ready ``rows`` (tuples in ``columns`` order) into ``table``.

    Runs in the connection's current transaction. Constraint violations surface as
    ``sqlalchemy.exc.IntegrityError`` on every backend (COPY errors are wrapped).
    With ``binary`` PostgreSQL gets a binary COPY (half the client and server work of
    text); every value must then have exactly its column's Python type (int for
    integer columns, str, UUID, bytes, float).
    """
    if rows:
        backend(conn).insert_rows(conn, table, columns, rows, binary)


@contextlib.contextmanager
def savepoint(conn: sa.Connection) -> Iterator[None]:
    """Shorthand for ``backend(conn).savepoint(conn)``."""
    with backend(conn).savepoint(conn):
        yield
