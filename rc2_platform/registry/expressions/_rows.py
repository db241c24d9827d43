"""A where-expression evaluated over rows held in memory (e.g. a RUN's provenance).

The rows go into an in-memory SQLite table and the expression is compiled with
:func:`to_sql`, so the language means exactly what it means against the registry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from rc2_platform.errors import ExpressionError
from rc2_platform.registry.expressions._parser import parse_where
from rc2_platform.registry.expressions._sql import to_sql

_ROW = "rc2_row"


def select_rows(
    rows: Sequence[Mapping[str, Any]],
    where: str,
    bind: Mapping[str, Any] | None,
    columns: Mapping[str, type],
    *,
    what: str = "rows",
) -> list[int]:
    """Indices of the ``rows`` that satisfy ``where``.

    Parameters
    ----------
    rows : sequence of mappings
        Column values (a missing column is NULL).
    where : str
        The expression; its identifiers must be keys of ``columns``.
    bind : mapping, optional
        Values of ``:name`` parameters.
    columns : mapping of str to type
        The identifiers and their types (``int`` or ``str``).
    what : str
        How to name the rows in an unknown-identifier message.

    Raises
    ------
    ExpressionSyntaxError, ExpressionError
        A malformed expression or an unknown identifier (the message lists the known ones).
    """
    expr = parse_where(where)
    metadata = sa.MetaData()
    table = sa.Table(
        "rows",
        metadata,
        sa.Column(_ROW, sa.Integer, primary_key=True),
        *[sa.Column(n, sa.Integer if t is int else sa.String) for n, t in columns.items()],
    )

    def resolve(name: str) -> Any:
        if name not in columns:
            raise ExpressionError(
                f"unknown identifier {name!r} in the where-expression over {what}; use "
                f"{', '.join(columns)}"
            )
        return table.c[name]

    clause = to_sql(expr, resolve, bind or {})
    engine = sa.create_engine("sqlite://")
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            if rows:
                conn.execute(
                    table.insert(),
                    [
                        {_ROW: i, **dict.fromkeys(columns), **{k: r[k] for k in r if k in columns}}
                        for i, r in enumerate(rows)
                    ],
                )
            found = conn.execute(sa.select(table.c[_ROW]).where(clause)).scalars()
            return sorted(found)
    finally:
        engine.dispose()
