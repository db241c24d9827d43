"""Engines and registry URLs: passwords from the environment, never stored or printed.

Per-backend engine setup (SQLite pragmas, server pools) is in the backend classes
(``_backend_sqlite.py``, ``_backend_servers.py``), reached through ``_dialect.py``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, unquote

import sqlalchemy as sa

from rc2_platform.errors import RegistryConnectionError
from rc2_platform.registry._dialect import backend_for_url

_log = logging.getLogger(__name__)

#: Environment variable holding the password of a server registry.
PASSWORD_ENV = "RC2_DB_PASSWORD"

#: Query parameters of a URL that hold secrets (compared in lower case): never stored,
#: never printed.
SECRET_QUERY_KEYS = frozenset(
    {"password", "passwd", "pwd", "pass", "sslpassword", "secret", "token", "access_token",
     "auth_token", "api_key", "apikey", "client_secret", "passfile"}
)  # fmt: skip
_HIDDEN = "***"
_UNPARSEABLE = "<a registry URL that cannot be parsed (not shown: it may hold a password)>"
_HOST_PART = re.compile(r"[\w.\-\[\]:%]*(/.*)?", re.S)


def _normalize(url: str) -> str:
    """``url`` with an ``@`` inside its password percent-encoded.

    ``postgresql://rc2:p@ss@db/rc2`` would otherwise parse with the password ``p`` and
    the host ``ss@db`` (and an error message would show ``ss``). The last ``@`` before
    the query that is followed by a plausible host ends the user information.
    """
    scheme, sep, rest = url.partition("://")
    head = rest.split("?", 1)[0]
    if not sep or head.count("@") < 2:
        return url
    at = head.rfind("@")
    if _HOST_PART.fullmatch(head[at + 1 :]) is None:
        return url
    user, colon, password = head[:at].partition(":")
    if not colon:
        return url
    return f"{scheme}://{user}:{quote(unquote(password), safe='')}{rest[at:]}"


def parse_url(url: Any) -> sa.URL:
    """Parse a registry URL; a malformed one -> RegistryConnectionError (never echoed).

    Checks the type (text), the syntax and the port (a number), so that a bad
    ``butler.yaml`` or ``--registry-url`` is one line, not a traceback.
    """
    if isinstance(url, sa.URL):
        return url
    if not isinstance(url, str) or not url.strip():
        raise RegistryConnectionError(
            f"the registry URL is {'empty' if isinstance(url, str) else 'a ' + type(url).__name__}"
            ", not a URL; write it as dialect+driver://user@host:port/database "
            "(e.g. postgresql+psycopg://rc2@db/rc2) and give the password in RC2_DB_PASSWORD"
        )
    try:
        parsed = sa.make_url(_normalize(url.strip()))
        port = parsed.port  # parsed lazily: a non-numeric port raises here
    except (sa.exc.ArgumentError, ValueError, TypeError):
        # Not echoed: a malformed URL may still hold a password.
        raise RegistryConnectionError(
            "the registry URL is not a valid SQLAlchemy URL (or its port is not a number); "
            "write it as dialect+driver://user@host:port/database (e.g. "
            "postgresql+psycopg://rc2@db:5432/rc2) and give the password in RC2_DB_PASSWORD"
        ) from None
    if port is not None and not 0 < port < 65536:
        raise RegistryConnectionError(
            f"the registry URL {safe_url(parsed._replace(port=None))} has port {port}, "
            "outside 1-65535"
        )
    return parsed


def _secret_keys(url: sa.URL) -> list[str]:
    return [k for k in url.query if k.lower() in SECRET_QUERY_KEYS]


def _secrets(url: sa.URL) -> list[str]:
    """Every secret value a URL carries (password, secret query parameters)."""
    values = [url.password] if url.password else []
    for key in _secret_keys(url):
        value = url.query[key]
        values += [value] if isinstance(value, str) else list(value)
    return [str(v) for v in values if v]


def safe_url(url: Any) -> str:
    """The URL as text with its password and secret query parameters hidden.

    For messages and logs. A URL that cannot be parsed is not shown at all.
    """
    try:
        parsed = parse_url(url)
    except RegistryConnectionError:
        return _UNPARSEABLE
    hidden = {k: "HIDDEN" for k in _secret_keys(parsed)}
    if hidden:
        parsed = parsed.update_query_dict(hidden)
    text = parsed.render_as_string(hide_password=True)
    return text.replace("=HIDDEN", "=" + _HIDDEN) if hidden else text


def scrub(text: str, url: Any) -> str:
    """``text`` (a driver's message) with every secret of ``url`` replaced by ``***``."""
    try:
        secrets = _secrets(parse_url(url))
    except RegistryConnectionError:
        return text
    for secret in sorted(secrets, key=len, reverse=True):
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            text = text.replace(form, _HIDDEN)
    return text


def _with_env_password(url: Any) -> sa.URL:
    parsed = parse_url(url)
    be = backend_for_url(parsed)
    if be.is_server and parsed.password is None and os.environ.get(PASSWORD_ENV):
        parsed = parsed.set(password=os.environ[PASSWORD_ENV])
    return parsed


def make_engine(url: str | sa.URL) -> sa.Engine:
    """Create an engine for ``url`` (per-backend setup in ``_dialect.py``).

    SQLite gets foreign keys, WAL and a busy timeout on every connection. For server
    URLs without a password, the password is read from ``RC2_DB_PASSWORD``; it is never
    logged. Server pools are small, pre-pinged and recycled hourly.
    """
    parsed = _with_env_password(url)
    return backend_for_url(parsed).create_engine(parsed)


def make_engine_for_migration(url: str | sa.URL) -> sa.Engine:
    """An engine for schema migrations (one unpooled connection; SQLite keys off)."""
    parsed = _with_env_password(url)
    return backend_for_url(parsed).create_migration_engine(parsed)


@contextmanager
def connecting(url: str) -> Iterator[None]:
    """Turn driver-level connection failures into a RegistryConnectionError."""
    try:
        yield
    except sa.exc.NoSuchModuleError as exc:
        raise RegistryConnectionError(
            f"no database driver for registry URL {safe_url(url)}: {scrub(str(exc), url)}; "
            "install the driver or name one in the URL (postgresql+psycopg, mysql+pymysql)"
        ) from None
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        lines = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
        reason = scrub(lines[0] if lines else type(exc).__name__, url)
        if not _names_a_server(url):  # a file: the server advice would mislead
            raise RegistryConnectionError(
                f"cannot use the registry database {safe_url(url)}: {reason}; check that the "
                "file and its folder are readable and writable, the disk has room and no "
                "file-size limit (ulimit -f) applies"
            ) from None
        raise RegistryConnectionError(
            f"cannot connect to the registry at {safe_url(url)}: {reason}; check that the "
            "server runs, the URL is right and RC2_DB_PASSWORD holds the password"
        ) from None


def _names_a_server(url: str) -> bool:
    """Whether ``url`` names a database server (not a file); True when it cannot be parsed."""
    try:
        return backend_for_url(parse_url(url)).is_server
    except Exception:  # an unparsable URL fails with its own message elsewhere
        return True


def existing_database_url(url: Any, read_only: bool = False) -> sa.URL:
    """The URL of an existing registry, checked before connecting; read-only if asked.

    Opening never creates or converts a database (the backend checks a SQLite file
    exists and is not empty); ``read_only`` gives a URL whose connections write
    nothing (see ``Backend.existing_url`` in ``_dialect.py``).
    """
    parsed = parse_url(url)
    return backend_for_url(parsed).existing_url(parsed, read_only)


def strip_password(url: str) -> str:
    """The URL as text without its password or secret query parameters.

    Warns (without the value) that the password is not stored: ``RC2_DB_PASSWORD``
    must hold it for every process opening the repository.
    """
    parsed = parse_url(url)
    secret_keys = _secret_keys(parsed)
    if parsed.password is not None or secret_keys:
        _log.warning(
            "the registry URL carried a password; it is not stored in %s. Set RC2_DB_PASSWORD "
            "in the environment of every process that opens this repository.",
            "butler.yaml",
        )
        # URL.set(password=None) keeps the old password (None means 'unchanged').
        parsed = parsed._replace(password=None).difference_update_query(secret_keys)
    return parsed.render_as_string(hide_password=False)
