"""Time limits on registry statements (used by the butler server).

:func:`limit_statement_time` makes every connection of an engine give up on a
statement that runs longer than a limit: PostgreSQL through ``statement_timeout``,
MariaDB through ``max_statement_time`` (MySQL: ``max_execution_time``), SQLite through
a progress handler that interrupts the statement once the calling thread's deadline
(:func:`query_deadline`) has passed. :func:`is_timeout` recognises the resulting
driver errors on every backend.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from rc2_platform.registry._dialect import backend

_deadline = threading.local()

#: SQLite calls the progress handler every this many virtual machine instructions.
_SQLITE_PROGRESS_STEPS = 20_000


@contextlib.contextmanager
def query_deadline(seconds: float) -> Iterator[None]:
    """Statements run by this thread inside the block stop ``seconds`` after it starts.

    Needed for SQLite (whose limit is per thread, not per session); harmless elsewhere.
    """
    previous = getattr(_deadline, "value", None)
    _deadline.value = time.monotonic() + seconds
    try:
        yield
    finally:
        _deadline.value = previous


def _sqlite_progress() -> int:
    deadline = getattr(_deadline, "value", None)
    return 1 if deadline is not None and time.monotonic() > deadline else 0


def limit_statement_time(engine: sa.Engine, seconds: float) -> None:
    """Make every (new) connection of ``engine`` stop statements running over ``seconds``.

    Existing pooled connections are closed so that all later ones carry the limit.
    """
    be = backend(engine)

    def on_connect(dbapi_conn: Any, record: Any) -> None:
        be.limit_statement_time(dbapi_conn, seconds, engine.dialect, _sqlite_progress)

    sa.event.listen(engine, "connect", on_connect)
    engine.dispose()


def is_refused_query(exc: BaseException) -> bool:
    """Whether a driver error is the database refusing a query (bad value or type)."""
    return isinstance(exc, sa.exc.DataError | sa.exc.ProgrammingError)


def is_timeout(exc: BaseException) -> bool:
    """Whether a driver error means a statement was stopped by its time limit."""
    orig = getattr(exc, "orig", exc)
    text = str(orig).lower()
    if getattr(orig, "sqlstate", None) == "57014":  # PostgreSQL query_canceled
        return True
    code = orig.args[0] if getattr(orig, "args", None) else None
    if code in (1969, 3024):  # MariaDB max_statement_time, MySQL max_execution_time
        return True
    return "interrupted" in text or "statement timeout" in text
