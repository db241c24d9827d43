"""The registry's connections: one shared transaction, short reads, kept lookup connections."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from rc2_platform.errors import QueryError
from rc2_platform.registry._dialect import WRITE_TRANSACTION, backend
from rc2_platform.registry._lookup import LookupConnections

_log = logging.getLogger(__name__)


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
        self._checkpointer = backend(engine).wal_checkpointer(engine)
        self._beside: list[threading.Thread] = []

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
        if self._checkpointer is not None:  # committed: copy the WAL back beside the caller
            self._checkpointer.after_commit()

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """The current transaction's connection, or a fresh one for this read.

        A value the database cannot compute (division by zero, an out-of-range
        result or a type mismatch in a where-expression's arithmetic) is a QueryError,
        not a crash.
        """
        try:
            if self.current is not None:
                yield self.current
            else:
                with self.engine.connect() as conn:
                    yield conn
        except Exception as exc:
            if not _is_evaluation_error(exc):
                raise
            orig = getattr(exc, "orig", None) or exc
            reason = str(orig).strip().splitlines()
            raise QueryError(
                f"the database cannot evaluate this query: {reason[0] if reason else exc}; "
                "check the where-expression's values and arithmetic"
            ) from None

    def beside(self, name: str, task: Callable[[], None]) -> None:
        """Run ``task`` (database maintenance on its own connection) in a background thread.

        The caller goes on; :meth:`close` waits for it. A failure is logged, not raised:
        the maintenance is redone by the next write or by the database itself.
        """

        def run() -> None:
            try:
                task()
            except Exception as exc:  # maintenance only: never the caller's failure
                _log.warning("registry maintenance %s failed: %s", name, exc)

        self._beside = [t for t in self._beside if t.is_alive()]
        thread = threading.Thread(target=run, name=f"rc2-{name}", daemon=True)
        self._beside.append(thread)
        thread.start()

    def close(self) -> None:
        """Wait for background maintenance; release the lookup and pooled connections."""
        for thread in self._beside:
            thread.join()
        self._beside.clear()
        self.lookups.discard()
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.engine.dispose()


def _is_evaluation_error(exc: BaseException) -> bool:
    """A DBAPI DataError / ProgrammingError (wrapped by SQLAlchemy or raised by the driver)."""
    if isinstance(exc, (sa.exc.DataError, sa.exc.ProgrammingError)):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"DataError", "ProgrammingError"}) and not isinstance(
        exc, sa.exc.SQLAlchemyError
    )
