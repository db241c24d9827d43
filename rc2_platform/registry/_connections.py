"""The registry's connections: one shared transaction, short reads, kept lookup connections."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from rc2_platform.registry._dialect import WRITE_TRANSACTION
from rc2_platform.registry._lookup import LookupConnections


class Connections:
    """The engine, the connection of the current transaction and the lookup connections.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The registry's engine.
    on_rollback : callable
        Called when a transaction fails (the registry drops its caches).
    """

    def __init__(self, engine: sa.Engine, on_rollback: Callable[[], None]):
        self.engine = engine
        self.current: sa.Connection | None = None
        self.lookups = LookupConnections(engine)
        self._on_rollback = on_rollback

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A write transaction shared by every registry call made inside the block."""
        if self.current is not None:
            yield self.current
            return
        try:
            # WRITE_TRANSACTION makes SQLite take its write lock at BEGIN (BEGIN IMMEDIATE):
            # two processes writing one registry then wait for each other (busy timeout)
            # instead of failing when a read-started transaction tries to write.
            with (
                self.engine.connect().execution_options(**{WRITE_TRANSACTION: True}) as conn,
                conn.begin(),
            ):
                self.current = conn
                yield conn
        except BaseException:
            self._on_rollback()
            raise
        finally:
            self.current = None

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """The current transaction's connection, or a fresh one for this read."""
        if self.current is not None:
            yield self.current
        else:
            with self.engine.connect() as conn:
                yield conn

    def close(self) -> None:
        """Release the lookup connections and every pooled connection."""
        self.lookups.discard()
        self.engine.dispose()
