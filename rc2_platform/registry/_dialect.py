"""Every difference between the registry's database backends, in one module.

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
"""

from __future__ import annotations

import contextlib
import operator
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import sqlalchemy as sa

from rc2_platform.errors import RepositoryNotFoundError, SchemaVersionError
from rc2_platform.registry import _bulk
from rc2_platform.registry._wal_checkpoint import AUTO_CHECKPOINT_PAGES, WalCheckpointer

#: Execution option marking a connection whose transaction will write (SQLite: BEGIN IMMEDIATE).
WRITE_TRANSACTION = "rc2_write_transaction"

#: PostgreSQL session option of read-only opens.
_READ_ONLY = "-c default_transaction_read_only=on"

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
            marks = _bulk._placeholders(conn.dialect, len(part))
            sql = f"SELECT {cols} FROM {table.name} WHERE {key} IN ({marks})"
            rows = conn.exec_driver_sql(sql, tuple(part))
            out += [(_hex_key(r[0]), *r[1:]) for r in rows]
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


class SqliteBackend(Backend):
    """SQLite: the embedded default (one file inside the repository)."""

    names = ("sqlite",)
    transactional_ddl = True
    is_server = False
    alters_by_rebuild = True
    analyzes_beside_writers = False  # a few ms, and it takes the write lock

    def create_engine(self, url: sa.URL) -> sa.Engine:
        """An engine with foreign keys, WAL and a busy timeout on every connection.

        A read-only URL (``mode=ro``, see ``_engine.read_only_url``) gets connections that
        change nothing: no journal-mode switch, ``query_only`` on.
        """
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        read_only = url.query.get("mode") == "ro"
        on_connect = _sqlite_on_connect_read_only if read_only else _sqlite_on_connect
        sa.event.listen(engine, "connect", on_connect)
        if not read_only:  # checkpoints run beside the writer (``_wal_checkpoint``)
            sa.event.listen(engine, "connect", _sqlite_later_auto_checkpoint)
        sa.event.listen(engine, "begin", _sqlite_on_begin)
        return engine

    def wal_checkpointer(self, engine: sa.Engine) -> WalCheckpointer | None:
        """A checkpointer of a writable database file (none for read-only or in-memory)."""
        database = engine.url.database or ""
        if engine.url.query.get("mode") == "ro" or database in ("", ":memory:"):
            return None
        if database.startswith("file:"):
            return None
        return WalCheckpointer(Path(database))

    def existing_url(self, url: sa.URL, read_only: bool) -> sa.URL:
        """The file must exist and not be empty; ``read_only`` makes a ``mode=ro`` URI.

        Connecting to a missing file would create it, and the WAL pragma would convert
        an empty one. A read-only URI is also ``immutable`` when the reader cannot write
        the folder or file and no writer is active (no ``-wal``/``-shm`` file), so a
        repository on a read-only filesystem can be queried.
        """
        database = str(url.database or "")
        if database in ("", ":memory:") or database.startswith("file:"):
            return url
        path = Path(database)
        if not path.is_file():
            raise RepositoryNotFoundError(
                f"the registry database {path} does not exist (it is never created by "
                "opening); check the repository folder, or create one with `rc2 create REPO`"
            )
        if path.stat().st_size == 0:
            raise SchemaVersionError(
                f"the registry database {path} is empty (0 bytes): it holds no rc2 registry; "
                "restore it from a backup or create a new repository"
            )
        if not read_only:
            return url
        query = {"mode": "ro", "uri": "true"}
        writable = os.access(path.parent, os.W_OK) and os.access(path, os.W_OK)
        writer = any(Path(f"{path}{suffix}").exists() for suffix in ("-wal", "-shm"))
        if not writable and not writer:
            query["immutable"] = "1"
        location = quote(str(path.resolve()), safe="/")
        return url.set(database=f"file:{location}").update_query_dict(query)

    def create_migration_engine(self, url: sa.URL) -> sa.Engine:
        """Foreign keys off: rebuilding a parent table must not cascade into its children.

        SQLite changes constraints only by copying a table and dropping the original;
        with foreign keys on, that DROP would delete every referencing row.
        ``PRAGMA foreign_key_check`` afterwards proves nothing dangles.
        """
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "connect", _sqlite_foreign_keys_off)
        sa.event.listen(engine, "begin", _sqlite_on_begin)
        return engine

    def insert_keys(
        self,
        conn: sa.Connection,
        table: sa.Table,
        key: str,
        values: Sequence[Any],
        constants: Mapping[str, Any],
    ) -> None:
        """One ``INSERT ... SELECT value, ?, ... FROM json_each(?)`` (no per-row binding)."""
        if values:
            cols = ", ".join([key, *constants])
            marks = ", ".join(["value"] + ["?"] * len(constants))
            sql = f"INSERT INTO {table.name} ({cols}) SELECT {marks} FROM json_each(?)"
            conn.exec_driver_sql(sql, (*constants.values(), _json_array(values)))

    def insert_grouped_keys(
        self,
        conn: sa.Connection,
        table: sa.Table,
        key: str,
        group_column: str,
        groups: Sequence[tuple[Any, Sequence[Any]]],
        constants: Mapping[str, Any],
    ) -> None:
        """One ``json_each`` insert per group (sorted): cheaper in SQLite than binding
        every row's three values for one sorted insert (0.07 against 0.10-0.15 CPU-s for
        tract 9615's 51,590 dataset rows)."""
        for group, values in groups:
            self.insert_keys(conn, table, key, sorted(values), {group_column: group, **constants})

    def insert_rows(
        self,
        conn: sa.Connection,
        table: sa.Table,
        columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        binary: bool,
    ) -> None:
        """Multi-row ``INSERT ... VALUES`` statements of up to 1,000 rows each."""
        _bulk.sqlite_values_rows(conn, table, columns, rows)

    def select_by_uuid_text(
        self,
        conn: sa.Connection,
        table: sa.Table,
        key: str,
        ids: Sequence[str],
        columns: Sequence[str] = (),
    ) -> list[tuple[Any, ...]]:
        """One query whatever the number of ids: ``key IN (SELECT value FROM json_each(?))``."""
        if not ids:
            return []
        sql = (
            f"SELECT {', '.join([key, *columns])} FROM {table.name} "
            f"WHERE {key} IN (SELECT value FROM json_each(?))"
        )
        return [tuple(r) for r in conn.exec_driver_sql(sql, (_json_array(ids),))]

    def write_columns(
        self, conn: sa.Connection, table: sa.Table, columns: Mapping[str, Any], n: int
    ) -> bool:
        """Bit-packed integer columns unpacked by ``json_each`` inside SQLite."""
        return _bulk.sqlite_packed_insert(conn, table, columns, n)

    def limit_statement_time(
        self,
        dbapi_conn: Any,
        seconds: float,
        dialect: sa.Dialect,
        progress: Callable[[], int],
    ) -> None:
        """A progress handler checking the calling thread's deadline every 20,000 steps."""
        dbapi_conn.set_progress_handler(progress, 20_000)

    def is_internal_table(self, name: str) -> bool:
        """SQLite's ``sqlite_*`` tables (statistics, sequences)."""
        return name.startswith("sqlite_")

    def dangling_references(self, conn: sa.Connection) -> list[str]:
        """``PRAGMA foreign_key_check``: one line per row referring to a missing parent."""
        rows = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        return [f"{r[0]} row {r[1]} -> {r[2]}" for r in rows]


def _sqlite_on_connect(dbapi_conn: Any, record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys = ON")
    cur.execute("PRAGMA busy_timeout = 30000")
    if dbapi_conn.execute("PRAGMA database_list").fetchone()[2]:
        cur.execute("PRAGMA journal_mode = WAL")
    # WAL + synchronous=NORMAL: a power loss may drop the last commits, never corrupt.
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.execute("PRAGMA cache_size = -65536")  # 64 MiB page cache
    cur.execute("PRAGMA temp_store = MEMORY")
    cur.close()


def _sqlite_later_auto_checkpoint(dbapi_conn: Any, record: Any) -> None:
    dbapi_conn.execute(f"PRAGMA wal_autocheckpoint = {AUTO_CHECKPOINT_PAGES}")


def _sqlite_on_connect_read_only(dbapi_conn: Any, record: Any) -> None:
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA query_only = ON")
    cur.execute("PRAGMA busy_timeout = 30000")
    cur.execute("PRAGMA cache_size = -65536")
    cur.execute("PRAGMA temp_store = MEMORY")
    cur.close()


def _sqlite_foreign_keys_off(dbapi_conn: Any, record: Any) -> None:
    dbapi_conn.execute("PRAGMA foreign_keys = OFF")


def _sqlite_on_begin(conn: sa.Connection) -> None:
    # BEGIN IMMEDIATE takes the write lock at once: two processes writing one registry
    # then wait for each other (busy timeout) instead of failing on lock upgrade.
    immediate = conn.get_execution_options().get(WRITE_TRANSACTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class PostgresBackend(Backend):
    """PostgreSQL through psycopg 3: the production registry."""

    names = ("postgresql",)
    errors_abort_transaction = True
    native_uuid = True
    transactional_ddl = True
    defers_foreign_keys = True

    def lock_schema_creation(self, conn: sa.Connection) -> None:
        """A transaction-level advisory lock, released when the creating transaction ends."""
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")

    def adapt_url(self, url: sa.URL) -> sa.URL:
        """``postgresql://`` means psycopg 3 (SQLAlchemy would pick psycopg2)."""
        if url.drivername == "postgresql":
            return url.set(drivername="postgresql+psycopg")
        return url

    def existing_url(self, url: sa.URL, read_only: bool) -> sa.URL:
        """Read-only: every transaction of the session is READ ONLY (the server refuses writes)."""
        if not read_only:
            return url
        options = url.query.get("options", "")
        options = " ".join([*([options] if isinstance(options, str) else options), _READ_ONLY])
        return url.update_query_dict({"options": options.strip()})

    def set_autocommit(self, driver_connection: Any) -> None:
        """psycopg: ``autocommit = True``."""
        driver_connection.autocommit = True

    def limit_statement_time(
        self,
        dbapi_conn: Any,
        seconds: float,
        dialect: sa.Dialect,
        progress: Callable[[], int],
    ) -> None:
        """``SET statement_timeout`` (milliseconds) for the session."""
        with dbapi_conn.cursor() as cur:
            cur.execute(f"SET statement_timeout = {max(1, int(seconds * 1000))}")
        if not getattr(dbapi_conn, "autocommit", True):
            dbapi_conn.commit()

    def uuid_to_db(self) -> Callable[[uuid.UUID], Any]:
        """psycopg binds ``uuid.UUID`` natively."""
        return _identity

    def uuids_to_db(self, ids: Sequence[uuid.UUID]) -> Sequence[Any]:
        """psycopg binds ``uuid.UUID`` natively."""
        return ids

    def uuid_from_db(self) -> Callable[[Any], uuid.UUID]:
        """psycopg returns ``uuid.UUID`` (text only through casts)."""
        return lambda v: v if isinstance(v, uuid.UUID) else uuid.UUID(str(v))

    def select_by_uuid_text(
        self,
        conn: sa.Connection,
        table: sa.Table,
        key: str,
        ids: Sequence[str],
        columns: Sequence[str] = (),
    ) -> list[tuple[Any, ...]]:
        """One query whatever the number of ids: ``key = ANY(%s::uuid[])``."""
        if not ids:
            return []
        sql = f"SELECT {', '.join([key, *columns])} FROM {table.name} WHERE {key} = ANY(%s::uuid[])"
        rows = conn.exec_driver_sql(sql, (list(ids),))
        return [(r[0].hex, *r[1:]) for r in rows]

    def savepoint(self, conn: sa.Connection) -> AbstractContextManager[Any]:
        """``SAVEPOINT``: after an error PostgreSQL refuses every statement until rollback."""
        return conn.begin_nested()

    def insert_rows(
        self,
        conn: sa.Connection,
        table: sa.Table,
        columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        binary: bool,
    ) -> None:
        """``COPY ... FROM STDIN`` (binary when every value has its column's exact type)."""
        _bulk.copy_rows(conn, table, columns, rows, binary)

    def write_columns(
        self, conn: sa.Connection, table: sa.Table, columns: Mapping[str, Any], n: int
    ) -> bool:
        """One binary ``COPY`` buffer built with numpy."""
        return _bulk.pg_binary_copy(conn, table, columns, n)

    def analyze(self, conn: sa.Connection, names: Sequence[str]) -> None:
        """One ``ANALYZE a, b, ...``."""
        conn.exec_driver_sql("ANALYZE " + ", ".join(names))

    def reset_identity(self, conn: sa.Connection, table: str, column: str) -> None:
        """``setval`` of the column's identity sequence to the stored maximum."""
        conn.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
            f"COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
        )

    def stale_tables(self, conn: sa.Connection, stale_fraction: float) -> list[str]:
        """Tables never analyzed, or with more than ``stale_fraction`` rows changed since.

        ``reltuples < 0`` (catalog, always current) marks a table never analyzed; the
        statistics views (flushed asynchronously) tell how much changed since.
        """
        rows = conn.exec_driver_sql(
            "SELECT c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND ("
            "c.reltuples < 0 OR COALESCE(s.n_mod_since_analyze, 0) > "
            f"{float(stale_fraction)} * GREATEST(c.reltuples, COALESCE(s.n_live_tup, 0), 1))"
        )
        return sorted(r[0] for r in rows)


class MysqlBackend(Backend):
    """MariaDB / MySQL through pymysql."""

    names = ("mysql", "mariadb")
    foreign_keys_create_indexes = True

    def lock_schema_creation(self, conn: sa.Connection) -> None:
        """A named lock (DDL commits at once here), released when the connection closes."""
        conn.exec_driver_sql(f"SELECT GET_LOCK('rc2_schema_{SCHEMA_LOCK_KEY}', 600)")

    def adapt_url(self, url: sa.URL) -> sa.URL:
        """Four-byte UTF-8 (``utf8mb4``) on every connection."""
        return url.update_query_dict({"charset": "utf8mb4"})

    def set_autocommit(self, driver_connection: Any) -> None:
        """pymysql: ``autocommit(True)``."""
        driver_connection.autocommit(True)

    def limit_statement_time(
        self,
        dbapi_conn: Any,
        seconds: float,
        dialect: sa.Dialect,
        progress: Callable[[], int],
    ) -> None:
        """MariaDB ``max_statement_time`` (seconds); MySQL ``max_execution_time`` (ms)."""
        cur = dbapi_conn.cursor()
        try:
            if getattr(dialect, "is_mariadb", False):
                cur.execute(f"SET SESSION max_statement_time = {float(seconds)}")
            else:
                cur.execute(f"SET SESSION max_execution_time = {max(1, int(seconds * 1000))}")
        finally:
            cur.close()

    def analyze(self, conn: sa.Connection, names: Sequence[str]) -> None:
        """One ``ANALYZE TABLE a, b, ...``."""
        conn.exec_driver_sql("ANALYZE TABLE " + ", ".join(names))


def _hex_key(value: Any) -> str:
    """A UUID as fetched (``uuid.UUID``, dashed or plain text) as 32 lower-case hex digits."""
    if isinstance(value, uuid.UUID):
        return value.hex
    return str(value).replace("-", "").lower()


def _json_array(values: Sequence[Any]) -> str:
    """A JSON array of strings or numbers (the text SQLite's ``json_each`` reads)."""
    return orjson.dumps(values if isinstance(values, list) else list(values)).decode()


def _identity(value: Any) -> Any:
    return value


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
