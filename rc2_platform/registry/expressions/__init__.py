"""The butler-style where-expression language: parser (lark) and SQL compiler.

Example
-------
>>> expr = parse_where("tract = 9615 AND band IN ('g', 'r') AND visit > :v")
>>> sorted(expr.identifiers()), sorted(expr.bind_names())
(['band', 'tract', 'visit'], ['v'])
>>> clause = to_sql(expr, resolve=columns.__getitem__, bind={"v": 1200})  # doctest: +SKIP

See ``docs/query-language.md`` for the grammar.
"""

from __future__ import annotations

from ._nodes import (
    Between,
    BinaryOp,
    Bind,
    Expression,
    Identifier,
    InList,
    Literal,
    Position,
    RangeLiteral,
    TimeLiteral,
    TrueExpression,
    UnaryOp,
)
from ._parser import parse_where
from ._rows import select_rows
from ._sql import Resolver, to_sql

__all__ = [
    "Between",
    "BinaryOp",
    "Bind",
    "Expression",
    "Identifier",
    "InList",
    "Literal",
    "Position",
    "RangeLiteral",
    "Resolver",
    "TimeLiteral",
    "TrueExpression",
    "UnaryOp",
    "parse_where",
    "select_rows",
    "to_sql",
]
