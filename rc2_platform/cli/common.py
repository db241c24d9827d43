"""Helpers shared by the command modules: error handling, tables, JSON output."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from rc2_platform.errors import Rc2Error

F = TypeVar("F", bound=Callable[..., Any])

#: Console for tables and progress (stdout) and for messages (stderr).
stdout_console = Console()
stderr_console = Console(stderr=True)


def handles_errors(func: F) -> F:
    """Turn :class:`Rc2Error` (and bad-input OS errors) into a one-line message and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Rc2Error as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def json_option(func: F) -> F:
    """Add ``--json`` (machine-readable output) to a command."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        func
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    return str(value)


def emit_rows(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    as_json: bool,
    title: str | None = None,
) -> None:
    """Print ``rows`` as a rich table, or as a JSON list of objects with ``--json``."""
    rows = list(rows)
    if as_json:
        click.echo(json.dumps([_jsonable(dict(r)) for r in rows], indent=2))
        return
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*["" if row.get(c) is None else str(row.get(c)) for c in columns])
    stdout_console.print(table)
    if not rows:
        stderr_console.print("(no results)")
