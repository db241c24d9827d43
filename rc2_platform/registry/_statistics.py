"""Planner statistics: find the tables whose statistics are missing or stale.

The graph builder's data-ID query joins a dozen tables; with missing statistics
PostgreSQL estimates one row for a 5,000-row tags table and picks nested loops that take
minutes (measured: 27 s instead of 0.1 s). Every registry table, including the
per-dimension-group ``tags_*`` / ``calibs_*`` tables, is therefore analyzed when its
statistics are absent or older than a fraction of its rows.
"""

from __future__ import annotations

import sqlalchemy as sa

#: A table is stale when more than this fraction of its rows changed since its last ANALYZE.
STALE_FRACTION = 0.2


def stale_tables(conn: sa.Connection, stale_fraction: float = STALE_FRACTION) -> list[str]:
    """Names of non-empty tables whose planner statistics are missing or stale."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        # reltuples < 0 (catalog, always current) marks a table never analyzed; the
        # statistics views (flushed asynchronously) tell how much changed since.
        rows = conn.exec_driver_sql(
            "SELECT c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND ("
            "c.reltuples < 0 OR COALESCE(s.n_mod_since_analyze, 0) > "
            f"{float(stale_fraction)} * GREATEST(c.reltuples, COALESCE(s.n_live_tup, 0), 1))"
        )
        return sorted(r[0] for r in rows)
    # SQLite's planner copes without statistics on these joins (measured), and
    # re-analyzing there would run on every build because empty tables never get a
    # sqlite_stat1 row; bulk inserts analyze it instead. MariaDB keeps persistent
    # statistics updated by InnoDB itself.
    return []
