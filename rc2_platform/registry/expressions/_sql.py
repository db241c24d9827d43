"""Compile a where-expression tree into a SQLAlchemy boolean expression.

Every constant and bind value becomes a bound parameter; no user text ever reaches
the SQL string. Identifiers are turned into columns by a caller-supplied ``resolve``.
"""

from __future__ import annotations

import datetime
import numbers
import uuid
from collections.abc import Callable, Mapping, Set
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from rc2_platform.errors import ExpressionError

from ._nodes import (
    ARITHMETIC_OPS,
    COMPARISON_OPS,
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

Resolver = Callable[[str], ColumnElement[Any]]

_COMPARE: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
_ARITH: dict[str, Callable[[Any, Any], ColumnElement[Any]]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "%": lambda a, b: a % b,
}


def to_sql(
    expr: Expression,
    resolve: Resolver,
    bind: Mapping[str, Any] | None = None,
) -> ColumnElement[bool]:
    """Compile ``expr`` into a SQLAlchemy boolean expression with bound parameters.

    Parameters
    ----------
    expr : Expression
        A tree from :func:`parse_where`.
    resolve : Callable[[str], ColumnElement]
        Maps an identifier (``"band"``, ``"visit.exposure_time"``) to a column;
        raises :class:`~rc2_platform.errors.ExpressionError` (or ``KeyError``) for
        unknown ones. The error is re-raised with the identifier's position.
    bind : Mapping[str, Any], optional
        Values of the ``:name`` bind parameters. A list, tuple or set value may be used
        with ``IN`` (``visit IN (:visits)`` or ``visit IN :visits``).

    Returns
    -------
    ColumnElement[bool]
        ``sqlalchemy.true()`` for the empty expression.

    Raises
    ------
    ExpressionError
        Unknown identifier, missing bind value, a list bind outside IN, or a value
        whose type cannot be compared with the column (e.g. ``visit = 'abc'``).
    """
    compiler = _Compiler(resolve, bind or {})
    return compiler.condition(expr)


def _where(pos: Position | None) -> str:
    if pos is None:
        return ""
    text = repr(pos.text) if len(pos.text) <= 120 else f"of {len(pos.text)} characters"
    return f" at {pos.describe()} of where-expression {text}"


def _python_type(element: Any) -> type | None:
    try:
        return element.type.python_type  # type: ignore[no-any-return]
    except (AttributeError, NotImplementedError):
        return None


class _Compiler:
    def __init__(self, resolve: Resolver, bind: Mapping[str, Any]):
        self._resolve = resolve
        self._bind = bind

    def condition(self, node: Expression) -> ColumnElement[bool]:
        if isinstance(node, TrueExpression):
            return sa.true()
        if isinstance(node, BinaryOp) and node.op in ("AND", "OR"):
            join = sa.and_ if node.op == "AND" else sa.or_
            return join(self.condition(node.lhs), self.condition(node.rhs))
        if isinstance(node, UnaryOp) and node.op == "NOT":
            return sa.not_(self.condition(node.operand))
        if isinstance(node, BinaryOp) and node.op in COMPARISON_OPS:
            lhs, rhs = self.value(node.lhs), self.value(node.rhs)
            self._check_types(node, lhs, rhs)
            return _COMPARE[node.op](lhs, rhs)
        if isinstance(node, InList):
            return self._in_list(node)
        if isinstance(node, Between):
            lhs = self.value(node.lhs)
            low, high = self.value(node.low), self.value(node.high)
            self._check_types(node, lhs, low)
            self._check_types(node, lhs, high)
            result = lhs.between(low, high)
            return sa.not_(result) if node.negated else result
        if isinstance(node, Literal) and isinstance(node.value, bool):
            return sa.true() if node.value else sa.false()
        if isinstance(node, (Identifier, Bind)):
            return self.value(node)
        raise ExpressionError(f"{node} is not a condition{_where(getattr(node, 'pos', None))}")

    def value(self, node: Expression) -> ColumnElement[Any]:
        if isinstance(node, Identifier):
            return self._identifier(node)
        if isinstance(node, Literal):
            return _lit(node.value)
        if isinstance(node, TimeLiteral):
            return sa.literal(node.nsec, sa.BigInteger())
        if isinstance(node, Bind):
            value = self._bind_value(node)
            if isinstance(value, (list, tuple, set, frozenset)):
                raise ExpressionError(
                    f"bind parameter :{node.name} holds a list{_where(node.pos)}; "
                    "a list can only be used with IN, e.g. 'visit IN (:visits)'"
                )
            return _lit(value)
        if isinstance(node, UnaryOp) and node.op == "-":
            operand = self.value(node.operand)
            if _python_type(operand) is str:
                raise ExpressionError(f"cannot negate a string{_where(node.pos)}")
            return -operand
        if isinstance(node, BinaryOp) and node.op in ARITHMETIC_OPS:
            lhs, rhs = self.value(node.lhs), self.value(node.rhs)
            if str in (_python_type(lhs), _python_type(rhs)):
                raise ExpressionError(
                    f"arithmetic {node} on a string{_where(node.pos)}; '+', '-', '*', '/' and "
                    "'%' take numbers"
                )
            return _ARITH[node.op](lhs, rhs)
        if isinstance(node, RangeLiteral):
            raise ExpressionError(
                f"range {node} can only be used inside IN (...){_where(node.pos)}"
            )
        # A condition used as a value, e.g. (a = 1) = TRUE.
        return self.condition(node)

    def _identifier(self, node: Identifier) -> ColumnElement[Any]:
        try:
            return self._resolve(node.name)
        except ExpressionError as exc:
            raise ExpressionError(f"{exc}{_where(node.pos)}") from None
        except LookupError as exc:
            detail = str(exc.args[0]) if exc.args else node.name
            extra = "" if detail == node.name else f" ({detail})"
            raise ExpressionError(
                f"unknown identifier {node.name!r}{_where(node.pos)}{extra}; "
                "use a dimension name or 'element.column'"
            ) from None

    def _bind_value(self, node: Bind) -> Any:
        if node.name not in self._bind:
            known = ", ".join(sorted(self._bind)) or "none"
            raise ExpressionError(
                f"no value given for bind parameter :{node.name}{_where(node.pos)}; "
                f"give it with --bind {node.name}=VALUE (Python: bind={{{node.name!r}: ...}}); "
                f"given: {known}"
            )
        return self._bind[node.name]

    def _in_list(self, node: InList) -> ColumnElement[bool]:
        lhs = self.value(node.lhs)
        scalars: list[Any] = []
        clauses: list[ColumnElement[bool]] = []
        for item in node.items:
            if isinstance(item, RangeLiteral):
                clauses.append(_range_clause(lhs, item))
            elif isinstance(item, Bind):
                value = self._bind_value(item)
                if isinstance(value, (list, tuple, Set)):
                    values = sorted(value, key=repr) if isinstance(value, Set) else list(value)
                    for v in values:
                        self._check_value(node, lhs, v)
                    if values:
                        clauses.append(lhs.in_(values))
                    else:
                        clauses.append(sa.false())
                else:
                    self._check_value(node, lhs, value)
                    scalars.append(_lit(value))
            elif isinstance(item, Literal):
                self._check_value(node, lhs, item.value)
                scalars.append(_lit(item.value))
            else:
                scalars.append(self.value(item))
        if scalars:
            clauses.insert(0, lhs.in_(scalars))
        result = clauses[0] if len(clauses) == 1 else sa.or_(*clauses)
        return sa.not_(result) if node.negated else result

    def _check_types(self, node: Expression, lhs: Any, rhs: Any) -> None:
        left, right = _python_type(lhs), _python_type(rhs)
        if left is None or right is None:
            return
        numeric = (int, float)
        if (issubclass(left, str) and issubclass(right, numeric)) or (
            issubclass(left, numeric) and issubclass(right, str)
        ):
            raise ExpressionError(
                f"cannot compare a {left.__name__} value with a {right.__name__} value{_where(getattr(node, 'pos', None))}; "
                "quote strings and leave numbers unquoted"
            )

    def _check_value(self, node: Expression, lhs: Any, value: Any) -> None:
        self._check_types(node, lhs, _lit(value))


def _lit(value: Any) -> ColumnElement[Any]:
    """A bound parameter; ints are 64-bit so large values (nanoseconds) fit, larger refused."""
    if isinstance(value, bool):
        return sa.literal(value, sa.Boolean())
    if isinstance(value, numbers.Integral):
        value = int(value)
        if not -(2**63) <= value < 2**63:
            raise ExpressionError(
                f"integer of {value.bit_length()} bits in the where-expression or its bind "
                "values does not fit in 64 bits (-2**63 to 2**63-1)"
            )
        return sa.literal(value, sa.BigInteger())
    if value is not None and not isinstance(value, (str, numbers.Real, *_OTHER_BIND_TYPES)):
        raise ExpressionError(
            f"bind value of type {type(value).__name__} is not a number, string, boolean, time "
            "or list of them"
        )
    return sa.literal(value)


#: Bind value types passed on to the driver as they are, besides numbers and strings.
_OTHER_BIND_TYPES = (datetime.date, datetime.time, datetime.timedelta, uuid.UUID)


def _range_clause(lhs: ColumnElement[Any], item: RangeLiteral) -> ColumnElement[bool]:
    clause: ColumnElement[bool] = lhs.between(_lit(item.start), _lit(item.stop))
    if item.step != 1:
        clause = sa.and_(clause, (lhs - _lit(item.start)) % _lit(item.step) == 0)
    return clause
