"""The server backends: PostgreSQL (psycopg 3) and MariaDB / MySQL (pymysql)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa

from rc2_platform.registry import _bulk
from rc2_platform.registry._backend_base import SCHEMA_LOCK_KEY, Backend, identity

__all__ = ["MysqlBackend", "PostgresBackend"]

#: PostgreSQL session option of read-only opens.
_READ_ONLY = "-c default_transaction_read_only=on"


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
        return identity

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
