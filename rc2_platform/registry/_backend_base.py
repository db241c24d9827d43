"""The generic database backend: what the registry asks of every database.

:class:`Backend` holds the behaviour every backend shares (the generic one, also used for
databases rc2 has no class for); the subclasses in ``_backend_sqlite`` and
``_backend_servers`` override what differs. ``_dialect`` picks one per connection.
"""

from __future__ import annotations

import contextlib
import operator
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import orjson
import sqlalchemy as sa

from rc2_platform.registry import _bulk
from rc2_platform.registry._wal_checkpoint import WalCheckpointer

__all__ = [
    "CLUSTERED_PRIMARY_KEY",
    "SCHEMA_LOCK_KEY",
    "WRITE_TRANSACTION",
    "Backend",
    "big_identity_type",
    "hex_key",
    "identity",
    "json_array",
]

#: Execution option marking a connection whose transaction will write (SQLite: BEGIN IMMEDIATE).
WRITE_TRANSACTION = "rc2_write_transaction"

#: Key of the advisory lock serializing schema creation in one database.
SCHEMA_LOCK_KEY = 7_271_982_011

#: Table options of a table whose primary key is its only access path (SQLite: WITHOUT ROWID).
CLUSTERED_PRIMARY_KEY: dict[str, Any] = {"sqlite_with_rowid": False}


def big_identity_type() -> sa.types.TypeEngine[Any]:
    """A 64-bit auto-increment key type (SQLite only auto-increments ``INTEGER``)."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Backend:
    """What one database backend needs done differently (the generic behaviour)."""

    #: SQLAlchemy backend names this class serves.
    names: tuple[str, ...] = ()
    #: A failed statement aborts the whole transaction: statements that may fail (and
    #: whose error the registry explains and re-raises) run inside a SAVEPOINT.
    errors_abort_transaction = False
    #: ``sa.Uuid`` values are bound and fetched as ``uuid.UUID`` (else 32 hex digits).
    native_uuid = False
    #: DDL runs inside a transaction and rolls back with it.
    transactional_ddl = False
    #: A bulk load into an empty table may drop its foreign keys and add them back after.
    defers_foreign_keys = False
    #: A server (the password may come from the environment).
    is_server = True
    #: Constraints and primary keys change only by rebuilding the table (SQLite).
    alters_by_rebuild = False
    #: A foreign key without a usable index gets one of its own, named like it (MariaDB).
    foreign_keys_create_indexes = False
    #: ``ANALYZE`` after a large write runs on its own connection beside the writer.
    analyzes_beside_writers = True

    # --- engines ------------------------------------------------------------------------

    def create_engine(self, url: sa.URL) -> sa.Engine:
        """An engine for ``url``: small pre-pinged pools, recycled hourly."""
        return sa.create_engine(
            self.adapt_url(url), pool_size=5, max_overflow=10, pool_pre_ping=True, pool_recycle=3600
        )

    def adapt_url(self, url: sa.URL) -> sa.URL:
        """The URL with this backend's defaults filled in."""
        return url

    def existing_url(self, url: sa.URL, read_only: bool) -> sa.URL:
        """The URL to open an existing registry with (checked; read-only if asked)."""
        return url

    def lock_schema_creation(self, conn: sa.Connection) -> None:
        """Serialize schema creation: two creators of one empty database wait in turn.

        The second then finds the schema made and reports it (no duplicate-table crash).
        SQLite takes its write lock at BEGIN (``WRITE_TRANSACTION``), so needs nothing here.
        """

    def create_migration_engine(self, url: sa.URL) -> sa.Engine:
        """An engine for schema migrations (no pool: one connection, closed after)."""
        return sa.create_engine(self.adapt_url(url), poolclass=sa.pool.NullPool)

    def set_autocommit(self, driver_connection: Any) -> None:
        """Put a raw DBAPI connection in autocommit mode (each statement sees the latest data)."""

    def limit_statement_time(
        self,
        dbapi_conn: Any,
        seconds: float,
        dialect: sa.Dialect,
        progress: Callable[[], int],
    ) -> None:
        """Make a new DBAPI connection stop statements running over ``seconds``.

        ``progress`` is SQLite's progress handler (a per-thread deadline); servers
        take a session setting.
        """

    # --- values -------------------------------------------------------------------------

    def uuid_to_db(self) -> Callable[[uuid.UUID], Any]:
        """The function turning a UUID into the value the driver binds for ``sa.Uuid``."""
        return operator.attrgetter("hex")

    def uuids_to_db(self, ids: Sequence[uuid.UUID]) -> Sequence[Any]:
        """Many UUIDs as the driver binds them for ``sa.Uuid``."""
        return list(map("{:032x}".format, map(operator.attrgetter("int"), ids)))

    def uuid_from_db(self) -> Callable[[Any], uuid.UUID]:
        """The function turning a raw driver value of a ``sa.Uuid`` column into a UUID."""
        return lambda v: v if isinstance(v, uuid.UUID) else _bulk.uuid_from_hex(v.replace("-", ""))

    def select_by_uuid_text(
        self,
        conn: sa.Connection,
        table: sa.Table,
        key: str,
        ids: Sequence[str],
        columns: Sequence[str] = (),
    ) -> list[tuple[Any, ...]]:
        """Rows ``(key, *columns)`` of ``table`` whose ``key`` is one of ``ids``.

        ``ids`` and the returned keys are UUIDs as 32 lower-case hex digits. Generic:
        ``IN`` lists of 5,000 driver-bound values (MariaDB's native ``uuid`` parses them).
        """
        cols = ", ".join([key, *columns])
        out: list[tuple[Any, ...]] = []
        for i in range(0, len(ids), 5_000):
            part = list(ids[i : i + 5_000])
            marks = _bulk.placeholders(conn.dialect, len(part))
            sql = f"SELECT {cols} FROM {table.name} WHERE {key} IN ({marks})"
            rows = conn.exec_driver_sql(sql, tuple(part))
            out += [(hex_key(r[0]), *r[1:]) for r in rows]
        return out

    # --- writes -------------------------------------------------------------------------

    def savepoint(self, conn: sa.Connection) -> AbstractContextManager[Any]:
        """A SAVEPOINT around statements that may fail, where a failure aborts the transaction."""
        return contextlib.nullcontext()

    def insert_rows(
        self,
        conn: sa.Connection,
        table: sa.Table,
        columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        binary: bool,
    ) -> None:
        """Insert driver-ready tuples (see :func:`insert_rows`)."""
        _bulk.executemany_rows(conn, table, columns, rows)

    def write_columns(
        self, conn: sa.Connection, table: sa.Table, columns: Mapping[str, Any], n: int
    ) -> bool:
        """Insert numpy columns without per-row tuples; False if this form is not supported."""
        return False

    def insert_keys(
        self,
        conn: sa.Connection,
        table: sa.Table,
        key: str,
        values: Sequence[Any],
        constants: Mapping[str, Any],
    ) -> None:
        """Insert one row per value of ``key``, every other column constant (``constants``)."""
        if values:
            repeat = [constants[c] for c in constants]
            rows = [(v, *repeat) for v in values]
            self.insert_rows(conn, table, [key, *constants], rows, False)

    def insert_grouped_keys(
        self,
        conn: sa.Connection,
        table: sa.Table,
        key: str,
        group_column: str,
        groups: Sequence[tuple[Any, Sequence[Any]]],
        constants: Mapping[str, Any],
    ) -> None:
        """Rows ``(value, group, *constants)`` for each ``(group, values)``: one insert
        sorted by ``key`` (one ``COPY`` on PostgreSQL instead of one per group)."""
        tail = tuple(constants.values())
        rows = sorted(
            ((v, group, *tail) for group, values in groups for v in values),
            key=operator.itemgetter(0),
        )
        self.insert_rows(conn, table, [key, group_column, *constants], rows, False)

    def wal_checkpointer(self, engine: sa.Engine) -> WalCheckpointer | None:
        """Background WAL checkpoints for ``engine``'s database (SQLite files only)."""
        return None

    # --- planner statistics -------------------------------------------------------------

    def analyze(self, conn: sa.Connection, names: Sequence[str]) -> None:
        """Refresh planner statistics of tables ``names``."""
        for name in names:
            conn.exec_driver_sql(f"ANALYZE {name}")

    def stale_tables(self, conn: sa.Connection, stale_fraction: float) -> list[str]:
        """Non-empty tables whose planner statistics are missing or stale (if tracked)."""
        return []

    def is_internal_table(self, name: str) -> bool:
        """Whether ``name`` is the database's own table (never analyzed or exported)."""
        return False

    def dangling_references(self, conn: sa.Connection) -> list[str]:
        """Rows whose foreign keys point nowhere, where they can exist (SQLite, keys off)."""
        return []

    def reset_identity(self, conn: sa.Connection, table: str, column: str) -> None:
        """Make ``column``'s next generated value follow the largest stored one.

        Needed after rows were inserted with explicit identity values (a table rebuilt by a
        migration); SQLite and MariaDB follow the stored maximum by themselves.
        """


def hex_key(value: Any) -> str:
    """A UUID as fetched (``uuid.UUID``, dashed or plain text) as 32 lower-case hex digits."""
    if isinstance(value, uuid.UUID):
        return value.hex
    return str(value).replace("-", "").lower()


def json_array(values: Sequence[Any]) -> str:
    """A JSON array of strings or numbers (the text SQLite's ``json_each`` reads)."""
    return orjson.dumps(values if isinstance(values, list) else list(values)).decode()


def identity(value: Any) -> Any:
    """``value`` itself (for a driver that binds the type natively)."""
    return value
