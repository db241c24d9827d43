"""Safe evaluation of pipeline contracts such as ``isr.do_flat == calibrate.do_photo_cal``.

A contract is parsed with :mod:`ast` and evaluated by walking the tree; only
literals, names (task labels, ``parameters``, ``True``/``False``/``None``), attribute
access (never to names starting with ``_``), comparisons, ``and``/``or``/``not``,
unary minus and ``+ - * /`` arithmetic are allowed. Nothing is passed to ``eval``.
A contract is at most :data:`MAX_CONTRACT_LENGTH` characters, ``*`` multiplies numbers only
(no ``'a' * 10**9`` memory bomb), and nesting too deep for the parser is refused.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

from rc2_platform.errors import PipelineError

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_CONSTANT_NAMES = {"True": True, "False": False, "None": None}
#: Longest contract accepted (characters).
MAX_CONTRACT_LENGTH = 1000


def quote_contract(text: str) -> str:
    """The contract as quoted in messages (long ones cut)."""
    return repr(text if len(text) <= 80 else text[:77] + "...")


def parse_contract(text: str) -> ast.Expression:
    """Parse and vet a contract expression.

    Raises
    ------
    PipelineError
        If the text is not an expression or uses anything outside the allowed subset.
    """
    if not isinstance(text, str) or len(text) > MAX_CONTRACT_LENGTH:
        length = len(text) if isinstance(text, str) else type(text).__name__
        raise PipelineError(
            f"contract {quote_contract(str(text))} is not a text of at most {MAX_CONTRACT_LENGTH} "
            f"characters ({length})"
        )
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise PipelineError(
            f"contract {quote_contract(text)} is not a valid expression: {exc.msg}"
        ) from None
    except (RecursionError, MemoryError):
        raise PipelineError(f"contract {quote_contract(text)} is nested too deeply") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise PipelineError(
                f"contract {quote_contract(text)} uses {type(node).__name__}, which is not allowed; use only "
                "comparisons, and/or/not, attribute access, literals and + - * /"
            )
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise PipelineError(
                f"contract {quote_contract(text)} accesses private attribute {node.attr!r}"
            )
    return tree


def contract_names(tree: ast.Expression) -> set[str]:
    """Return the free names (task labels, ``parameters``) a parsed contract uses."""
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id not in _CONSTANT_NAMES}


def evaluate_contract(text: str, namespace: Mapping[str, Any]) -> Any:
    """Evaluate a contract with ``namespace`` (label -> config, ``parameters`` -> dict).

    Raises
    ------
    PipelineError
        If the contract is not allowed, or names an unknown label or attribute.
    """
    tree = parse_contract(text)
    try:
        return _eval(tree.body, namespace)
    except (AttributeError, KeyError, TypeError, ZeroDivisionError, OverflowError) as exc:
        raise PipelineError(
            f"contract {quote_contract(text)} could not be evaluated: {exc}"
        ) from None
    except (RecursionError, MemoryError):
        raise PipelineError(f"contract {quote_contract(text)} is nested too deeply") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _eval(node: ast.AST, ns: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in _CONSTANT_NAMES:
            return _CONSTANT_NAMES[node.id]
        if node.id not in ns:
            raise KeyError(f"unknown name {node.id!r}")
        return ns[node.id]
    if isinstance(node, ast.Attribute):
        base = _eval(node.value, ns)
        if isinstance(base, Mapping):
            return base[node.attr]
        return getattr(base, node.attr)
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_eval(e, ns) for e in node.elts)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, ns)
        return (not value) if isinstance(node.op, ast.Not) else -value
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, ns), _eval(node.right, ns)
        if isinstance(node.op, ast.Mult) and not (_is_number(left) and _is_number(right)):
            raise TypeError(f"'*' multiplies numbers only, not {type(left).__name__} and "
                            f"{type(right).__name__}")  # fmt: skip
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(v, ns) for v in node.values)
        return any(_eval(v, ns) for v in node.values)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, ns)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, ns)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    raise PipelineError(f"unsupported expression element {type(node).__name__}")


_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.Attribute,
    ast.Tuple,
    ast.List,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.BinOp,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.Compare,
    *_COMPARE,
    *_BINARY,
)
