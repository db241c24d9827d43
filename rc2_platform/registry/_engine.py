"""Engine creation per backend: SQLite pragmas, server pools, passwords from the environment."""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa

#: Environment variable holding the password of a server registry.
PASSWORD_ENV = "RC2_DB_PASSWORD"

#: Execution option marking a connection whose transaction will write (SQLite: BEGIN IMMEDIATE).
WRITE_TRANSACTION = "rc2_write_transaction"


def safe_url(url: str | sa.URL) -> str:
    """The URL as text with any password hidden (for messages and logs)."""
    return sa.make_url(url).render_as_string(hide_password=True)


def make_engine(url: str | sa.URL) -> sa.Engine:
    """Create an engine for ``url``.

    SQLite gets foreign keys, WAL and a busy timeout on every connection. For server
    URLs without a password, the password is read from ``RC2_DB_PASSWORD``; it is never
    logged. Server pools are small, pre-pinged and recycled hourly.
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(parsed, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    if parsed.password is None and os.environ.get(PASSWORD_ENV):
        parsed = parsed.set(password=os.environ[PASSWORD_ENV])
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    kwargs: dict[str, Any] = dict(
        pool_size=5, max_overflow=10, pool_pre_ping=True, pool_recycle=3600
    )
    if parsed.get_backend_name() in ("mysql", "mariadb"):
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return sa.create_engine(parsed, **kwargs)


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


def _sqlite_on_begin(conn: sa.Connection) -> None:
    immediate = conn.get_execution_options().get(WRITE_TRANSACTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
