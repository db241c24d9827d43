"""Throw-away databases on the test servers, one per test, for every registry backend.

PostgreSQL and MariaDB URLs come from ``RC2_TEST_POSTGRES_URL`` and ``RC2_TEST_MYSQL_URL``
(defaults: the local servers of the development machines). When a server is unreachable
the test is skipped with the reason, except under ``CI=true`` where it fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

POSTGRES_URL = os.environ.get(
    "RC2_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("RC2_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")

BACKENDS = ("sqlite", "postgresql", "mariadb")


def _unreachable(backend: str, url: str, exc: Exception) -> None:
    reason = f"{backend} server at {sa.make_url(url).render_as_string(hide_password=True)} is unreachable: {exc}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: database tests must run)")
    pytest.skip(reason)


@contextmanager
def scratch_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of a new empty database for ``backend``; drop it afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.sqlite3'}"
        return
    server_url = POSTGRES_URL if backend == "postgresql" else MYSQL_URL
    name = f"rc2t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        _unreachable(backend, server_url, exc)
    try:
        yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if backend == "postgresql":
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :n AND pid <> pg_backend_pid()"
                    ),
                    {"n": name},
                )
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()
