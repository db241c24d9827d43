"""Engines and registry URLs: passwords from the environment, never stored or printed.

Per-backend engine setup (SQLite pragmas, server pools) is in ``_dialect.py``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from rc2_platform.errors import RegistryConnectionError
from rc2_platform.registry._dialect import backend_for_url

_log = logging.getLogger(__name__)

#: Environment variable holding the password of a server registry.
PASSWORD_ENV = "RC2_DB_PASSWORD"


def safe_url(url: str | sa.URL) -> str:
    """The URL as text with any password hidden (for messages and logs)."""
    return sa.make_url(url).render_as_string(hide_password=True)


def make_engine(url: str | sa.URL) -> sa.Engine:
    """Create an engine for ``url`` (per-backend setup in ``_dialect.py``).

    SQLite gets foreign keys, WAL and a busy timeout on every connection. For server
    URLs without a password, the password is read from ``RC2_DB_PASSWORD``; it is never
    logged. Server pools are small, pre-pinged and recycled hourly.
    """
    parsed = sa.make_url(url)
    be = backend_for_url(parsed)
    if be.is_server and parsed.password is None and os.environ.get(PASSWORD_ENV):
        parsed = parsed.set(password=os.environ[PASSWORD_ENV])
    return be.create_engine(parsed)


def make_engine_for_migration(url: str | sa.URL) -> sa.Engine:
    """An engine for schema migrations (one unpooled connection; SQLite keys off)."""
    parsed = sa.make_url(url)
    be = backend_for_url(parsed)
    if be.is_server and parsed.password is None and os.environ.get(PASSWORD_ENV):
        parsed = parsed.set(password=os.environ[PASSWORD_ENV])
    return be.create_migration_engine(parsed)


def parse_url(url: str) -> sa.URL:
    """Parse a registry URL; a malformed one -> RegistryConnectionError (never echoed)."""
    try:
        return sa.make_url(url)
    except sa.exc.ArgumentError:
        # Not echoed: a malformed URL may still hold a password.
        raise RegistryConnectionError(
            "the registry URL is not a valid SQLAlchemy URL; write it as "
            "dialect+driver://user@host:port/database (e.g. postgresql+psycopg://rc2@db/rc2) "
            "and give the password in RC2_DB_PASSWORD"
        ) from None


@contextmanager
def connecting(url: str) -> Iterator[None]:
    """Turn driver-level connection failures into a RegistryConnectionError."""
    try:
        yield
    except sa.exc.NoSuchModuleError as exc:
        raise RegistryConnectionError(
            f"no database driver for registry URL {safe_url(url)}: {exc}; install the driver "
            "or name one in the URL (postgresql+psycopg, mysql+pymysql)"
        ) from None
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        reason = str(exc.orig if exc.orig is not None else exc).strip().splitlines()[0]
        raise RegistryConnectionError(
            f"cannot connect to the registry at {safe_url(url)}: {reason}; check that the "
            "server runs, the URL is right and RC2_DB_PASSWORD holds the password"
        ) from None


def strip_password(url: str) -> str:
    """The URL as text without its password (warning that the password is not stored)."""
    parsed = parse_url(url)
    if parsed.password is not None:
        _log.warning(
            "the registry URL carried a password; it is not stored in %s. Set RC2_DB_PASSWORD "
            "in the environment of every process that opens this repository.",
            "butler.yaml",
        )
        # URL.set(password=None) keeps the old password (None means 'unchanged').
        parsed = parsed._replace(password=None)
    return parsed.render_as_string(hide_password=False)
