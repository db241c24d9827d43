"""The syntax tree of a parsed where-expression.

Every node is an immutable dataclass. Positions are kept for error messages but do
not take part in equality, so ``parse_where(str(e)) == e`` holds for any parsed ``e``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

LiteralValue = int | float | str | bool


@dataclass(frozen=True, slots=True)
class Position:
    """Where a node was found in the expression text.

    Parameters
    ----------
    text : str
        The whole expression (shared by every node of one parse).
    start, end : int
        Character offsets of the node's text, ``text[start:end]``.
    line, column : int
        1-based line and column of ``start``.
    """

    text: str
    start: int
    end: int
    line: int
    column: int

    def describe(self) -> str:
        """Return ``'line L, column C ('snippet')'`` for error messages."""
        snippet = self.text[self.start : self.end]
        return f"line {self.line}, column {self.column} ({snippet!r})"

    def caret(self) -> str:
        """Return the offending line and a caret line under the node's text."""
        lines = self.text.splitlines() or [""]
        src = lines[self.line - 1] if self.line - 1 < len(lines) else ""
        width = max(1, min(self.end - self.start, len(src) - self.column + 1))
        return f"    {src}\n    {' ' * (self.column - 1)}{'^' * width}"


def _pos_field() -> Position | None:
    return field(default=None, compare=False, repr=False)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Expression:
    """Base class of every node of a where-expression syntax tree."""

    #: Precedence used when rendering back to text (higher binds tighter).
    precedence: ClassVar[int] = 100

    def children(self) -> tuple[Expression, ...]:
        """Return the direct sub-expressions."""
        return ()

    def walk(self) -> Iterator[Expression]:
        """Yield this node and all its descendants, depth first."""
        yield self
        for child in self.children():
            yield from child.walk()

    def identifiers(self) -> set[str]:
        """Return every identifier used, dotted ones as ``"element.column"``."""
        return {n.name for n in self.walk() if isinstance(n, Identifier)}

    def bind_names(self) -> set[str]:
        """Return the names of every bind parameter (``:name``) used."""
        return {n.name for n in self.walk() if isinstance(n, Bind)}

    @property
    def is_true(self) -> bool:
        """Whether this is the always-true expression of an empty where string."""
        return False

    def _wrap(self, child: Expression, min_prec: int) -> str:
        text = str(child)
        return f"({text})" if child.precedence < min_prec else text


@dataclass(frozen=True, slots=True)
class TrueExpression(Expression):
    """The expression of an empty where string: matches everything."""

    pos: Position | None = _pos_field()

    @property
    def is_true(self) -> bool:
        """Always True."""
        return True

    def __str__(self) -> str:
        return ""


@dataclass(frozen=True, slots=True)
class Literal(Expression):
    """An integer, float, string or boolean constant."""

    value: LiteralValue
    pos: Position | None = _pos_field()

    def __str__(self) -> str:
        if isinstance(self.value, bool):
            return "TRUE" if self.value else "FALSE"
        if isinstance(self.value, str):
            return "'" + self.value.replace("'", "''") + "'"
        return repr(self.value)


@dataclass(frozen=True, slots=True)
class TimeLiteral(Expression):
    """A time constant ``T'2019-03-05T10:00:00'`` (TAI), held as integer nanoseconds."""

    iso: str
    nsec: int
    pos: Position | None = _pos_field()

    def __str__(self) -> str:
        return f"T'{self.iso}'"


@dataclass(frozen=True, slots=True)
class Identifier(Expression):
    """A column or dimension name, possibly dotted (``visit.exposure_time``)."""

    name: str
    pos: Position | None = _pos_field()

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Bind(Expression):
    """A bind parameter ``:name`` whose value comes from the ``bind`` mapping."""

    name: str
    pos: Position | None = _pos_field()

    def __str__(self) -> str:
        return f":{self.name}"


@dataclass(frozen=True, slots=True)
class RangeLiteral(Expression):
    """An inclusive integer range ``start..stop`` or ``start..stop:step`` (inside IN only)."""

    start: int
    stop: int
    step: int = 1
    pos: Position | None = _pos_field()

    def __str__(self) -> str:
        return f"{self.start}..{self.stop}" + (f":{self.step}" if self.step != 1 else "")


@dataclass(frozen=True, slots=True)
class UnaryOp(Expression):
    """``NOT operand`` (op ``"NOT"``) or ``-operand`` (op ``"-"``)."""

    op: str
    operand: Expression
    pos: Position | None = _pos_field()

    @property
    def precedence(self) -> int:  # type: ignore[override]
        return 3 if self.op == "NOT" else 7

    def children(self) -> tuple[Expression, ...]:
        return (self.operand,)

    def __str__(self) -> str:
        sep = " " if self.op == "NOT" else ""
        return f"{self.op}{sep}{self._wrap(self.operand, self.precedence)}"


#: Binary operators and their precedence (higher binds tighter).
BINARY_PRECEDENCE: dict[str, int] = {
    "OR": 1,
    "AND": 2,
    "=": 4,
    "!=": 4,
    "<": 4,
    "<=": 4,
    ">": 4,
    ">=": 4,
    "+": 5,
    "-": 5,
    "*": 6,
    "/": 6,
    "%": 6,
}
LOGICAL_OPS = frozenset({"AND", "OR"})
COMPARISON_OPS = frozenset({"=", "!=", "<", "<=", ">", ">="})
ARITHMETIC_OPS = frozenset({"+", "-", "*", "/", "%"})


@dataclass(frozen=True, slots=True)
class BinaryOp(Expression):
    """``lhs op rhs`` for logical (AND, OR), comparison and arithmetic operators.

    ``<>`` is normalized to ``!=``.
    """

    op: str
    lhs: Expression
    rhs: Expression
    pos: Position | None = _pos_field()

    @property
    def precedence(self) -> int:  # type: ignore[override]
        return BINARY_PRECEDENCE[self.op]

    def children(self) -> tuple[Expression, ...]:
        return (self.lhs, self.rhs)

    def __str__(self) -> str:
        p = self.precedence
        # Comparisons do not chain; the right operand of - / % must be wrapped if equal.
        left_min = p + 1 if self.op in COMPARISON_OPS else p
        return f"{self._wrap(self.lhs, left_min)} {self.op} {self._wrap(self.rhs, p + 1)}"


@dataclass(frozen=True, slots=True)
class InList(Expression):
    """``lhs [NOT] IN (item, ...)``; items are scalars, binds or :class:`RangeLiteral`.

    ``lhs IN :name`` is an InList with a single :class:`Bind` item.
    """

    lhs: Expression
    items: tuple[Expression, ...]
    negated: bool = False
    pos: Position | None = _pos_field()

    precedence: ClassVar[int] = 4

    def children(self) -> tuple[Expression, ...]:
        return (self.lhs, *self.items)

    def __str__(self) -> str:
        kw = "NOT IN" if self.negated else "IN"
        return f"{self._wrap(self.lhs, 5)} {kw} ({', '.join(str(i) for i in self.items)})"


@dataclass(frozen=True, slots=True)
class Between(Expression):
    """``lhs [NOT] BETWEEN low AND high`` (inclusive)."""

    lhs: Expression
    low: Expression
    high: Expression
    negated: bool = False
    pos: Position | None = _pos_field()

    precedence: ClassVar[int] = 4

    def children(self) -> tuple[Expression, ...]:
        return (self.lhs, self.low, self.high)

    def __str__(self) -> str:
        kw = "NOT BETWEEN" if self.negated else "BETWEEN"
        return f"{self._wrap(self.lhs, 5)} {kw} {self._wrap(self.low, 5)} AND {self._wrap(self.high, 5)}"


def is_condition(node: Expression) -> bool:
    """Whether ``node`` can be a truth value (not a number or string constant)."""
    if isinstance(node, (Identifier, Bind, TrueExpression, InList, Between)):
        return True
    if isinstance(node, Literal):
        return isinstance(node.value, bool)
    if isinstance(node, UnaryOp):
        return node.op == "NOT"
    if isinstance(node, BinaryOp):
        return node.op in LOGICAL_OPS or node.op in COMPARISON_OPS
    return False
