"""Single data-ID lookups: a statement compiled once, run on a kept raw driver connection.

``Registry.find_dataset`` is called in loops (one call per quantum input in places), so
its per-call cost is what matters: SQLAlchemy's connection checkout, ``BEGIN``, statement
cache lookup and result processing cost several times the query itself. Here the
find-first statement is compiled once per (dataset type, collections, timespan) to the
driver's SQL string, and each call only builds the parameter tuple and runs it on the
DBAPI cursor of a per-thread connection in autocommit mode (each lookup sees the latest
committed data; psycopg prepares the statement server-side after a few executions).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from rc2_platform.registry._dialect import backend


@dataclass(frozen=True)
class CompiledLookup:
    """A find-first statement compiled for one dialect, with its parameter layout.

    Attributes
    ----------
    sql : str
        The driver-level SQL text.
    positional : bool
        Whether the driver takes a tuple (qmark/format) or a dict (pyformat).
    names : tuple[str, ...]
        Parameter names in positional order (or the dict keys).
    constants : dict[str, Any]
        Values of parameters that are not data ID values.
    keys : dict[str, int]
        Parameter name -> index of the data ID value it takes.
    """

    sql: str
    positional: bool
    names: tuple[str, ...]
    constants: dict[str, Any]
    keys: dict[str, int]

    @classmethod
    def build(
        cls, stmt: sa.Select[Any], dimensions: Sequence[str], dialect: sa.Dialect
    ) -> CompiledLookup:
        """Compile ``stmt`` whose data ID parameters are ``k_<dimension>`` bind parameters."""
        keys = {f"k_{d}": i for i, d in enumerate(dimensions)}
        # Placeholder values let the IN lists be rendered now; calls supply the real ones.
        state = stmt.compile(dialect=dialect).construct_expanded_state(dict.fromkeys(keys, 0))
        params = state.parameters
        order = state.positiontup
        names = tuple(order) if order is not None else tuple(params)
        constants = {k: v for k, v in params.items() if k not in keys}
        return cls(state.statement, order is not None, names, constants, keys)

    def args(self, values: Sequence[Any]) -> Any:
        """The driver parameters for a data ID's values (dimension order)."""
        keys, constants = self.keys, self.constants
        if self.positional:
            return tuple(values[keys[n]] if n in keys else constants[n] for n in self.names)
        out = dict(constants)
        for name, i in keys.items():
            out[name] = values[i]
        return out


class LookupConnections:
    """One raw autocommit driver connection per thread for read-only lookups."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self._local = threading.local()
        self._pid = os.getpid()

    def _connection(self) -> Any:
        if os.getpid() != self._pid:
            # Forked: the parent's connections are not ours to use or close.
            self._local = threading.local()
            self._pid = os.getpid()
        raw = getattr(self._local, "raw", None)
        if raw is None:
            raw = self.engine.raw_connection()
            driver = raw.dbapi_connection
            # SQLite connections already run with isolation_level=None (autocommit).
            backend(self.engine).set_autocommit(driver)
            self._local.raw = raw
        return raw

    def fetch_one(self, sql: str, args: Any) -> Any:
        """First row of ``sql`` (None if none); reconnects once if the connection died."""
        for attempt in (0, 1):
            raw = self._connection()
            try:
                cur = raw.cursor()
                try:
                    cur.execute(sql, args)
                    return cur.fetchone()
                finally:
                    cur.close()
            except Exception:
                self.discard()
                if attempt:
                    raise
        return None

    def discard(self) -> None:
        """Drop this thread's connection (closed for good, not returned to the pool)."""
        raw = getattr(self._local, "raw", None)
        self._local.raw = None
        if raw is not None:
            with contextlib.suppress(Exception):  # already broken
                raw.invalidate()


def fetch_one_in(conn: sa.Connection, sql: str, args: Any) -> Any:
    """First row of ``sql`` on the driver connection of ``conn`` (its transaction)."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cur = raw.cursor()
    try:
        cur.execute(sql, args)
        return cur.fetchone()
    finally:
        cur.close()
