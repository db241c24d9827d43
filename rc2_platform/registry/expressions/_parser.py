"""Parse a butler-style where-expression with lark into the :mod:`._nodes` tree."""

from __future__ import annotations

import functools
import math
from typing import Any

import lark
from lark import Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError

from rc2_platform.errors import ExpressionSyntaxError

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
    is_condition,
)

#: Deepest parse tree accepted (after chains of AND / OR are balanced): the tree is
#: walked recursively afterwards, so this keeps far below Python's recursion limit.
MAX_DEPTH = 100
#: Most terms joined by one chain of AND or OR (SQLite evaluates at most 1000).
MAX_TERMS = 500
#: Longest where-expression accepted (characters).
MAX_LENGTH = 1_000_000

GRAMMAR = r"""
?start: or_expr

?or_expr: and_expr
        | or_expr OR and_expr                -> logical
?and_expr: not_expr
         | and_expr AND not_expr             -> logical
?not_expr: predicate
         | NOT not_expr                      -> not_op
?predicate: sum
          | sum COMP_OP sum                  -> compare
          | sum IN "(" in_items ")"          -> in_list
          | sum NOT IN "(" in_items ")"      -> not_in_list
          | sum IN bind                      -> in_bind
          | sum NOT IN bind                  -> not_in_bind
          | sum BETWEEN sum AND sum          -> between
          | sum NOT BETWEEN sum AND sum      -> not_between
?sum: product
    | sum ADD_OP product                     -> arith
?product: unary
        | product MUL_OP unary               -> arith
?unary: atom
      | ADD_OP unary                         -> sign
?atom: literal
     | identifier
     | bind
     | "(" or_expr ")"

in_items: in_item ("," in_item)*
?in_item: range
        | sum
range: INT RANGE_DOTS INT (":" INT)?

literal: INT | FLOAT | STRING | TRUE | FALSE | TIME
identifier: NAME
bind: BIND

OR.3: /or\b/i
AND.3: /and\b/i
NOT.3: /not\b/i
IN.3: /in\b/i
BETWEEN.3: /between\b/i
TRUE.3: /true\b/i
FALSE.3: /false\b/i
TIME.4: /[tT]'[^']*'/
NAME: /[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?/
BIND: /:[A-Za-z_][A-Za-z0-9_]*/
FLOAT.2: /\d+\.\d+([eE][+-]?\d+)?|\d+[eE][+-]?\d+/
INT: /\d+/
STRING: /'([^']|'')*'/
RANGE_DOTS: ".."
COMP_OP: "<=" | ">=" | "!=" | "<>" | "=" | "<" | ">"
ADD_OP: "+" | "-"
MUL_OP: "*" | "/" | "%"

%import common.WS
%ignore WS
"""

#: Human names of grammar terminals for "expected ..." messages.
_TERMINAL_NAMES = {
    "OR": "OR",
    "AND": "AND",
    "NOT": "NOT",
    "IN": "IN",
    "BETWEEN": "BETWEEN",
    "TRUE": "TRUE",
    "FALSE": "FALSE",
    "TIME": "a time literal T'...'",
    "NAME": "an identifier",
    "BIND": "a bind parameter :name",
    "FLOAT": "a number",
    "INT": "a number",
    "STRING": "a quoted string",
    "RANGE_DOTS": "'..'",
    "COMP_OP": "a comparison operator (= != < <= > >=)",
    "ADD_OP": "'+' or '-'",
    "MUL_OP": "'*', '/' or '%'",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "COLON": "':'",
    "$END": "the end of the expression",
}


@functools.cache
def _lark_parser() -> lark.Lark:
    return lark.Lark(
        GRAMMAR, parser="lalr", lexer="basic", propagate_positions=True, maybe_placeholders=False
    )


def _describe_expected(expected: set[str]) -> str:
    names = sorted({_TERMINAL_NAMES.get(t, t) for t in expected})
    if not names:
        return "something else"
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _expected_after(prefix: str) -> set[str]:
    """Terminals the parser would accept after ``prefix`` (which lexes cleanly)."""
    try:
        interactive = _lark_parser().parse_interactive(prefix)
        interactive.exhaust_lexer()
        return set(interactive.accepts())
    except UnexpectedInput:
        return set()


def _syntax_error(text: str, exc: UnexpectedInput) -> ExpressionSyntaxError:
    line = getattr(exc, "line", 1) or 1
    column = getattr(exc, "column", 1) or 1
    if isinstance(exc, UnexpectedCharacters):
        at = exc.pos_in_stream or 0
        bad = text[at] if at < len(text) else "end"
        what = f"unexpected character {bad!r}"
        if bad == "'":
            what = (
                "unterminated string (the quote here is never closed; write '' for a quote inside)"
            )
        expected = _expected_after(text[:at])
    elif isinstance(exc, UnexpectedEOF) or getattr(exc, "token", None) is None:
        what = "unexpected end of expression"
        expected = set(getattr(exc, "expected", ()) or ())
        lines = text.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
    else:
        token: Token = exc.token  # type: ignore[attr-defined]
        if token.type == "$END":
            what = "unexpected end of expression"
            lines = text.splitlines() or [""]
            line, column = len(lines), len(lines[-1]) + 1
        else:
            what = f"unexpected {str(token)!r}"
        expected = set(exc.expected)  # type: ignore[attr-defined]
    return _format_error(text, line, column, f"{what}; expected {_describe_expected(expected)}")


def _format_error(text: str, line: int, column: int, detail: str) -> ExpressionSyntaxError:
    lines = text.splitlines() or [""]
    src = lines[line - 1] if line - 1 < len(lines) else ""
    where = f"column {column}" if len(lines) == 1 else f"line {line}, column {column}"
    caret = column - 1
    if len(src) > 2 * _CONTEXT:  # show the neighbourhood of the error, not megabytes
        start = max(0, caret - _CONTEXT)
        src, caret = "..." + src[start : caret + _CONTEXT] + "...", caret - start + 3
    quoted = repr(text) if len(text) <= 2 * _CONTEXT else f"of {len(text)} characters"
    return ExpressionSyntaxError(
        f"cannot parse where-expression {quoted} at {where}: {detail}; "
        f"fix the expression (see docs/query-language.md)\n    {src}\n    {' ' * caret}^"
    )


#: Characters shown on each side of an error in a long expression.
_CONTEXT = 60


class _NodeError(Exception):
    """Raised inside the transformer; turned into ExpressionSyntaxError by parse_where."""

    def __init__(self, pos: Position, detail: str):
        super().__init__(detail)
        self.pos = pos
        self.detail = detail


@v_args(meta=True, inline=True)
class _ToNodes(Transformer[Token, Expression]):
    def __init__(self, text: str):
        super().__init__()
        self._text = text

    def _pos(self, meta: Any) -> Position | None:
        if getattr(meta, "empty", True):
            return None
        return Position(self._text, meta.start_pos, meta.end_pos, meta.line, meta.column)

    def _tok_pos(self, tok: Token) -> Position:
        return Position(
            self._text,
            tok.start_pos or 0,
            tok.end_pos or 0,
            tok.line or 1,
            tok.column or 1,
        )

    def _condition(self, node: Expression, op: str) -> Expression:
        if not is_condition(node):
            pos = getattr(node, "pos", None)
            if pos is not None:
                raise _NodeError(pos, f"operand of {op} is {node}, which is not a condition")
        return node

    def literal(self, meta: Any, tok: Token) -> Expression:
        pos = self._tok_pos(tok)
        kind, raw = tok.type, str(tok)
        if kind == "INT":
            return Literal(_integer(raw, pos), pos)
        if kind == "FLOAT":
            value = float(raw)
            if not math.isfinite(value):
                raise _NodeError(pos, f"number {raw} is too large for a 64-bit float")
            return Literal(value, pos)
        if kind == "STRING":
            return Literal(raw[1:-1].replace("''", "'"), pos)
        if kind in ("TRUE", "FALSE"):
            return Literal(kind == "TRUE", pos)
        return _time_literal(raw[2:-1], pos)

    def identifier(self, meta: Any, tok: Token) -> Expression:
        return Identifier(str(tok), self._tok_pos(tok))

    def bind(self, meta: Any, tok: Token) -> Expression:
        return Bind(str(tok)[1:], self._tok_pos(tok))

    def range(
        self, meta: Any, start: Token, _dots: Token, stop: Token, step: Token | None = None
    ) -> Expression:
        pos = self._pos(meta) or self._tok_pos(start)
        step_value = 1 if step is None else _integer(str(step), pos)
        if step_value <= 0:
            raise _NodeError(pos, f"range step must be a positive integer, not {step_value}")
        return RangeLiteral(_integer(str(start), pos), _integer(str(stop), pos), step_value, pos)

    def in_items(self, meta: Any, *items: Expression) -> tuple[Expression, ...]:
        return items

    def logical(self, meta: Any, lhs: Expression, op: Token, rhs: Expression) -> Expression:
        name = str(op).upper()
        return BinaryOp(
            name, self._condition(lhs, name), self._condition(rhs, name), self._pos(meta)
        )

    def not_op(self, meta: Any, _kw: Token, operand: Expression) -> Expression:
        return UnaryOp("NOT", self._condition(operand, "NOT"), self._pos(meta))

    def compare(self, meta: Any, lhs: Expression, op: Token, rhs: Expression) -> Expression:
        name = "!=" if str(op) == "<>" else str(op)
        return BinaryOp(name, lhs, rhs, self._pos(meta))

    def arith(self, meta: Any, lhs: Expression, op: Token, rhs: Expression) -> Expression:
        return BinaryOp(str(op), lhs, rhs, self._pos(meta))

    def sign(self, meta: Any, op: Token, operand: Expression) -> Expression:
        if str(op) == "+":
            return operand
        if (
            isinstance(operand, Literal)
            and isinstance(operand.value, (int, float))
            and not isinstance(operand.value, bool)
        ):
            return Literal(-operand.value, self._pos(meta))
        return UnaryOp("-", operand, self._pos(meta))

    def in_list(
        self, meta: Any, lhs: Expression, _kw: Token, items: tuple[Expression, ...]
    ) -> Expression:
        return InList(lhs, items, False, self._pos(meta))

    def not_in_list(
        self, meta: Any, lhs: Expression, _n: Token, _kw: Token, items: tuple[Expression, ...]
    ) -> Expression:
        return InList(lhs, items, True, self._pos(meta))

    def in_bind(self, meta: Any, lhs: Expression, _kw: Token, item: Expression) -> Expression:
        return InList(lhs, (item,), False, self._pos(meta))

    def not_in_bind(
        self, meta: Any, lhs: Expression, _n: Token, _kw: Token, item: Expression
    ) -> Expression:
        return InList(lhs, (item,), True, self._pos(meta))

    def between(
        self, meta: Any, lhs: Expression, _kw: Token, low: Expression, _and: Token, high: Expression
    ) -> Expression:
        return Between(lhs, low, high, False, self._pos(meta))

    def not_between(
        self,
        meta: Any,
        lhs: Expression,
        _n: Token,
        _kw: Token,
        low: Expression,
        _and: Token,
        high: Expression,
    ) -> Expression:
        return Between(lhs, low, high, True, self._pos(meta))


def _integer(raw: str, pos: Position) -> int:
    """An integer literal; beyond 64 bits (2**63 allowed for a sign) -> _NodeError."""
    digits = raw.lstrip("0") or "0"
    if len(digits) > 19 or int(digits) > 2**63:
        shown = raw if len(raw) <= 30 else f"{raw[:27]}... ({len(raw)} digits)"
        raise _NodeError(pos, f"integer {shown} does not fit in 64 bits (-2**63 to 2**63-1)")
    return int(digits)


def _time_literal(iso: str, pos: Position) -> TimeLiteral:
    from astropy.time import Time

    from rc2_platform.core.timespan import time_to_nsec

    try:
        t = Time(iso, scale="tai")
    except ValueError as exc:
        raise _NodeError(pos, f"{iso!r} is not a time; write T'YYYY-MM-DDThh:mm:ss' (TAI)") from exc
    return TimeLiteral(iso, time_to_nsec(t), pos)


def _flatten(tree: lark.Tree[Token]) -> None:
    """Rebalance chains of one logical operator and drop pairs of NOTs, in place.

    ``a OR b OR c OR ...`` parses as a left-deep tree as deep as the chain is long; as
    AND and OR are associative it is rebuilt as a balanced tree (depth log2 of the
    terms), and ``NOT NOT x`` is ``x`` (also in SQL's three-valued logic). Iterative:
    a chain of any length is flattened without recursion.
    """
    stack: list[lark.Tree[Token]] = [tree]
    while stack:
        node = stack.pop()
        if node.data == "logical":
            op = str(node.children[1]).upper()
            operands: list[Any] = []
            pending: list[Any] = [node.children[2], node.children[0]]
            while pending:
                child = pending.pop()
                if _is_logical(child, op):
                    pending += [child.children[2], child.children[0]]
                else:
                    operands.append(child)
            if len(operands) > MAX_TERMS:
                raise ExpressionSyntaxError(
                    f"where-expression joins {len(operands)} terms with {op} (more than "
                    f"{MAX_TERMS}, what every database evaluates); write the alternatives as an "
                    "IN list (visit IN (1, 2, 3)) or a list bind (visit IN (:visits))"
                )
            balanced = _balanced(operands, node.children[1], node.meta)
            node.children = balanced.children
            stack.extend(c for c in operands if isinstance(c, lark.Tree))
            continue
        if node.data == "not_op":
            inner, nots = node.children[1], 1
            while isinstance(inner, lark.Tree) and inner.data == "not_op":
                inner, nots = inner.children[1], nots + 1
            if nots % 2 == 0 and isinstance(inner, lark.Tree):
                node.data, node.children = inner.data, inner.children
                stack.append(node)
                continue
            node.children = [node.children[0], inner]
        stack.extend(c for c in node.children if isinstance(c, lark.Tree))


def _is_logical(node: Any, op: str) -> bool:
    return (
        isinstance(node, lark.Tree)
        and node.data == "logical"
        and str(node.children[1]).upper() == op
    )


def _balanced(operands: list[Any], op: Any, meta: Any) -> lark.Tree[Token]:
    """A balanced tree of ``logical`` nodes joining ``operands`` (at least two) with ``op``."""
    level = operands
    while len(level) > 2:
        level = [
            lark.Tree("logical", [level[i], op, level[i + 1]], meta)
            if i + 1 < len(level)
            else level[i]
            for i in range(0, len(level), 2)
        ]
    return lark.Tree("logical", [level[0], op, level[1]], meta)


def _depth(tree: lark.Tree[Token]) -> int:
    """The nesting depth of a parse tree, measured without recursion."""
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((c, depth + 1) for c in node.children if isinstance(c, lark.Tree))
    return deepest


def parse_where(text: str) -> Expression:
    """Parse a where-expression.

    Parameters
    ----------
    text : str
        The expression, e.g. ``"tract = 9615 AND band IN ('g', 'r') AND visit > :v"``.
        Empty or whitespace-only text means "no constraint".

    Returns
    -------
    Expression
        The syntax tree; :class:`TrueExpression` for empty text.

    Raises
    ------
    ExpressionSyntaxError
        If the text is not a valid expression; the message quotes it, gives the
        column, shows a caret under the offending token and says what was expected.
    """
    if not text or not text.strip():
        return TrueExpression()
    if "\x00" in text:
        col = text.index("\x00") + 1
        raise _format_error(text, 1, col, "NUL characters are not allowed")
    if len(text) > MAX_LENGTH:
        raise ExpressionSyntaxError(
            f"where-expression of {len(text)} characters is longer than {MAX_LENGTH}; "
            "put long value lists in a bind parameter (visit IN (:visits))"
        )
    try:
        tree = _lark_parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    _flatten(tree)
    depth = _depth(tree)
    if depth > MAX_DEPTH:
        raise ExpressionSyntaxError(
            f"where-expression nests {depth} levels deep (more than {MAX_DEPTH}); write long "
            "alternatives as IN lists (visit IN (1, 2, 3)) and fewer nested parentheses, "
            "NOTs or arithmetic terms (see docs/query-language.md)"
        )
    try:
        node = _ToNodes(text).transform(tree)
    except VisitError as exc:
        orig = exc.orig_exc
        if isinstance(orig, _NodeError):
            raise _format_error(text, orig.pos.line, orig.pos.column, orig.detail) from None
        raise
    if not is_condition(node):
        pos = getattr(node, "pos", None)
        line, col = (pos.line, pos.column) if pos is not None else (1, 1)
        raise _format_error(
            text, line, col, f"{node} is a value, not a condition; compare it to something"
        )
    return node
