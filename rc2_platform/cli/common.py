"""What every ``rc2`` command shares: exit codes, the REPO argument, output options, tables.

Command modules import this module and click only at module level; everything heavy
(the butler, numpy, astropy, rich) is imported inside the command function, so that
``rc2 --help`` stays fast. ``docs/cli.md`` describes how to add a command.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])

# --- exit codes (docs/cli.md) -----------------------------------------------------------

#: Everything asked for was done.
EXIT_OK = 0
#: Bad input (a value, file or data ID breaks a rule) or the request was refused;
#: nothing was changed.
EXIT_BAD_INPUT = 1
#: Usage error: unknown option, missing argument (click's own code).
EXIT_USAGE = 2
#: Partial failure: the command ran to the end but some items (quanta, files,
#: validation metrics) failed; the rest is done and a re-run repairs only what failed.
EXIT_PARTIAL = 3
#: Failure of the whole operation (nothing succeeded, the database or backend failed,
#: or an unexpected internal error).
EXIT_FAILURE = 4
#: Interrupted (Ctrl-C, SIGINT): what finished is kept, the rest was not done; the shell's
#: 128 + signal number. Running the command again finishes it (``rc2 run``: ``--resume``).
EXIT_INTERRUPTED = 130


def exit_code_for_counts(succeeded: int, failed: int) -> int:
    """The exit code of an operation with ``succeeded`` and ``failed`` items."""
    if failed == 0:
        return EXIT_OK
    return EXIT_PARTIAL if succeeded > 0 else EXIT_FAILURE


def exit_code_for_run(status: str, counts: Mapping[str, int]) -> int:
    """The exit code of a run: 0 if it succeeded, 3 if some quanta succeeded, else 4."""
    if status == "succeeded":
        return EXIT_OK
    return EXIT_PARTIAL if counts.get("succeeded", 0) > 0 else EXIT_FAILURE


# --- messages -----------------------------------------------------------------------------


def escape_controls(text: str, keep: str = "") -> str:
    """``text`` with every non-printable character but those in ``keep`` escaped.

    Terminal control sequences stored from a header or typed into a name (``\x1b[...``,
    bidi overrides, ``\r``) are shown as escapes, never sent to the terminal raw.
    """
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() or c in keep else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


def print_error(message: str) -> None:
    """Print ``Error: message`` on stderr (one line; a query error adds its caret line)."""
    click.echo(f"Error: {escape_controls(message, keep=chr(10))}", err=True)


def print_note(message: str) -> None:
    """Print an informational line on stderr (keeps stdout for the result)."""
    click.echo(escape_controls(message, keep=chr(10)), err=True)


def database_error_line(exc: BaseException) -> str | None:
    """One line for a database error the butler did not translate, else ``None``."""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None or not isinstance(exc, sa_exc.DBAPIError):
        return None
    reason = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
    return f"registry database error: {reason[0] if reason else exc}"


def handles_errors(func: F) -> F:
    """Kept for existing commands: the ``rc2`` group already handles every error.

    Commands run outside the group (a bare ``click.Group`` in a test) still get the
    one-line message and exit code.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            from rc2_platform.cli._group import _exit_for_exception

            _exit_for_exception(exc)

    return wrapper  # type: ignore[return-value]


# --- consoles (rich is imported on first use) -----------------------------------------


@functools.cache
def stdout() -> Console:
    """The rich console of stdout (tables, progress of results)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


@functools.cache
def stderr() -> Console:
    """The rich console of stderr (progress, notes)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def __getattr__(name: str) -> Any:
    """``stdout_console`` / ``stderr_console`` as attributes, created on first use."""
    if name == "stdout_console":
        return stdout()
    if name == "stderr_console":
        return stderr()
    raise AttributeError(name)


# --- the repository argument -------------------------------------------------------------


def repo_argument(func: F) -> F:
    """The positional ``REPO`` argument (a repository folder), first on every command."""
    return click.argument("repo", metavar="REPO")(func)


class RepoCommand(click.Command):
    """A command whose REPO is positional and still accepts the old ``--repo R``.

    ``--repo`` is a hidden alias kept for one release: its value becomes the first
    positional argument and a one-line deprecation note goes to stderr.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        args, repo = _take_repo_option(args)
        if repo is not None:
            if not ctx.resilient_parsing:
                print_note(
                    f"note: `--repo` is deprecated and goes in the next release; give the "
                    f"repository first: rc2 {self.name} {repo} ..."
                )
            args = [repo, *args]
        return super().parse_args(ctx, args)


def _take_repo_option(args: list[str]) -> tuple[list[str], str | None]:
    """Remove ``--repo VALUE`` / ``--repo=VALUE`` from ``args``; return the rest and VALUE."""
    out: list[str] = []
    repo: str | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out.extend(args[i:])
            break
        value: str | None = None
        if arg == "--repo":
            if i + 1 >= len(args):
                raise click.UsageError("--repo needs a value (better: give REPO first)")
            value, i = args[i + 1], i + 2
        elif arg.startswith("--repo="):
            value, i = arg.partition("=")[2], i + 1
        else:
            out.append(arg)
            i += 1
            continue
        if repo is not None:
            raise click.UsageError("--repo given twice")
        repo = value
    return out, repo


def require_repository(repo: str) -> None:
    """Refuse a REPO folder without ``butler.yaml``, without opening the registry (cheap)."""
    from pathlib import Path

    from rc2_platform.errors import RepositoryNotFoundError

    config = Path(repo) / "butler.yaml"
    if not config.is_file():
        raise RepositoryNotFoundError(
            f"no repository at {repo}: {config} does not exist; create one with `rc2 create {repo}`"
        )


# --- output options ----------------------------------------------------------------------

_FORMAT_KEY = "rc2_output_format"
FORMATS = ("table", "json", "csv")


def named_collections(values: Sequence[str], command: str, unchanged: str) -> list[str]:
    """The collections of a required ``--collections`` (comma-separated or repeated).

    An empty value (``-c ''``, ``-c ,``) names no collection. The queries read no
    collections as every collection (``rc2 query-datasets``); a command that removes,
    copies or moves data acts only on collections named explicitly, so it is refused
    here (:class:`~rc2_platform.errors.ConfigError`, exit 1) rather than read as "none"
    or "all". ``unchanged`` ends the line (e.g. ``nothing was removed``).
    """
    names = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if not names:
        from rc2_platform.errors import ConfigError

        given = " ".join(f"-c {v!r}" for v in values)
        raise ConfigError(
            f"{given} names no collection: rc2 {command} acts only on collections named "
            "explicitly (an empty list means every collection only to the queries, e.g. "
            "rc2 query-datasets); name them, comma-separated or repeated "
            f"(`rc2 collections list REPO` lists them); {unchanged}"
        )
    return names


def json_option(func: F) -> F:
    """Add ``--json`` (machine-readable output); the command receives ``as_json``."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON on stdout instead of text."
    )(func)


def format_option(func: F) -> F:
    """Add ``--format table|json|csv`` and ``--json`` (= ``--format json``) to a table command.

    The command receives ``as_json`` (True for JSON); :func:`emit_rows` reads the
    chosen format, so a command only passes ``as_json`` on.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, output_format: str | None, as_json: bool, **kwargs: Any) -> Any:
        fmt = "json" if as_json else (output_format or "table")
        if as_json and output_format not in (None, "json"):
            raise click.UsageError(f"--json contradicts --format {output_format}")
        click.get_current_context().meta[_FORMAT_KEY] = fmt
        return func(*args, as_json=fmt == "json", **kwargs)

    wrapper = click.option(
        "--format",
        "output_format",
        type=click.Choice(FORMATS),
        default=None,
        help="Output as a table (full width when not a terminal), JSON or CSV [default: table].",
    )(wrapper)
    return json_option(wrapper)  # type: ignore[return-value]


def output_format() -> str:
    """The format chosen with ``--format``/``--json`` for the running command (``table``)."""
    ctx = click.get_current_context(silent=True)
    return str(ctx.meta.get(_FORMAT_KEY, "table")) if ctx is not None else "table"


def _current_format(as_json: bool) -> str:
    return "json" if as_json else output_format()


def to_jsonable(value: Any) -> Any:
    """``value`` with mappings, sequences and other objects made JSON-serialisable."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    return str(value)


def emit_json(doc: Any) -> None:
    """Print ``doc`` as indented JSON on stdout."""
    click.echo(json.dumps(to_jsonable(doc), indent=2))


def sort_key(values: Iterable[Any]) -> tuple[tuple[int, Any], ...]:
    """A sort key ordering integers numerically and everything else as text.

    Detectors sort 7, 8, 9, 30 (not 30, 7, 8, 9); ``None`` sorts first.
    """
    key: list[tuple[int, Any]] = []
    for value in values:
        if value is None:
            key.append((0, 0))
        elif isinstance(value, bool):
            key.append((2, str(value)))
        elif isinstance(value, (int, float)):
            key.append((1, value))
        else:
            key.append((2, str(value)))
    return tuple(key)


def natural_key(text: str) -> tuple[tuple[int, Any], ...]:
    """Sort key for names with numbers in them: ``step1_HSC_998`` before ``step1_HSC_1000``."""
    import re

    return tuple(
        (1, int(part)) if part.isdigit() else (2, part) for part in re.split(r"(\d+)", text) if part
    )


def emit_rows(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    as_json: bool,
    title: str | None = None,
) -> None:
    """Print ``rows`` as a table, a JSON list of objects or CSV (per ``--format``).

    Tables are never cut: on a terminal long cells wrap; piped or redirected, the
    table takes the width it needs and has no vertical rules (``grep``/``awk`` friendly).
    """
    rows = list(rows)
    fmt = _current_format(as_json)
    if fmt == "json":
        emit_json([dict(r) for r in rows])
        return
    if fmt == "csv":
        _emit_csv(rows, columns)
        return
    _emit_table(rows, columns, title)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return escape_controls(", ".join(str(v) for v in value))
    return escape_controls(str(value))


def _emit_csv(rows: list[Mapping[str, Any]], columns: Sequence[str]) -> None:
    import csv
    import io

    columns = list(columns) or (list(rows[0]) if rows else [])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    click.echo(buffer.getvalue(), nl=False)


def _render_full_width(renderable: Any) -> str:
    """``renderable`` as plain text as wide as it needs, trailing blanks stripped."""
    import io

    from rich.console import Console
    from rich.measure import Measurement

    console = Console(file=io.StringIO(), width=1_000_000, no_color=True, highlight=False)
    width = Measurement.get(console, console.options, renderable).maximum
    console = Console(file=io.StringIO(), width=max(width, 1), no_color=True)
    with console.capture() as captured:
        console.print(renderable)
    return "\n".join(line.rstrip() for line in captured.get().splitlines())


def _emit_table(rows: list[Mapping[str, Any]], columns: Sequence[str], title: str | None) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    console = stdout()
    piped = not console.is_terminal
    table = Table(box=box.SIMPLE if piped else box.HEAVY_HEAD)
    for col in columns:
        values = [row.get(col) for row in rows if row.get(col) is not None]
        numeric = bool(values) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        )
        table.add_column(Text(col), overflow="fold", justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*[Text(_cell(row.get(c))) for c in columns])
    if title:  # a line of its own: a rich title would wrap to the table's width
        console.print(Text(escape_controls(title), style="bold"), soft_wrap=True)
    if piped:
        click.echo(_render_full_width(table))
    else:
        console.print(table)
    if not rows:
        print_note("(no results)")
