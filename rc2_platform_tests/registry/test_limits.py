"""Statement time limits stop long queries on every backend, recognisably."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from rc2_platform.registry._engine import make_engine
from rc2_platform.registry.limits import is_timeout, limit_statement_time, query_deadline

#: A statement that runs for many seconds on each backend unless stopped.
_SLOW = {
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
    "WHERE x < 1000000000) SELECT count(*) FROM c",
    "postgresql": "SELECT pg_sleep(30)",
    "mysql": "SELECT SLEEP(30)",
}


def test_long_statements_are_stopped_and_recognised(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        limit_statement_time(engine, 0.3)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
        with (
            query_deadline(0.3),
            engine.connect() as conn,
            pytest.raises(sa.exc.DBAPIError) as caught,
        ):
            conn.execute(sa.text(_SLOW[engine.dialect.name]))
        assert is_timeout(caught.value)
        # The connection is usable afterwards, and quick statements still run.
        with query_deadline(0.3), engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 2")).scalar_one() == 2
    finally:
        engine.dispose()


def test_other_database_errors_are_not_timeouts(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as caught:
            conn.execute(sa.text("SELECT * FROM no_such_table"))
        assert not is_timeout(caught.value)
    finally:
        engine.dispose()
