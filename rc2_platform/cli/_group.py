"""The ``rc2`` click group: commands imported on use, errors turned into exit codes."""

from __future__ import annotations

import errno
import importlib
import logging
import sys
from collections.abc import Mapping
from typing import Any

import click

from rc2_platform.cli import common

_log = logging.getLogger("rc2_platform.cli")


class LazyGroup(click.Group):
    """A click group whose commands come from a ``name -> "module:attribute"`` table.

    A command's module is imported only when the command is looked up (to run it, or to
    list its one-line help in ``rc2 --help``). The group also turns the exceptions of
    every command into one line on stderr and the exit codes of :mod:`.common`.

    Parameters
    ----------
    commands_table
        Command name -> ``"package.module:attribute"`` (a click command or group).
    sections
        Module -> section title for ``--help``; commands of other modules go under
        "Other commands".
    """

    def __init__(
        self,
        *args: Any,
        commands_table: Mapping[str, str] | None = None,
        sections: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.commands_table = dict(commands_table or {})
        self.sections = dict(sections or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*self.commands_table, *(n for n in super().list_commands(ctx))]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = self.commands_table.get(cmd_name)
        if target is None:
            return None
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"rc2 command table: {target} is not a click command")
        self.commands[cmd_name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the commands under section headings, in table order."""
        by_section: dict[str, list[tuple[str, click.Command]]] = {}
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            module = self.commands_table.get(name, "").partition(":")[0]
            section = self.sections.get(module, "Other commands")
            by_section.setdefault(section, []).append((name, command))
        if not by_section:
            return
        width = max(len(name) for rows in by_section.values() for name, _ in rows)
        limit = 200  # the whole first sentence, wrapped: a listing cut at "..." explains little
        for section, rows in by_section.items():
            with formatter.section(section):
                formatter.write_dl(
                    [(n.ljust(width), c.get_short_help_str(limit)) for n, c in rows], col_max=width
                )

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            # click would print "Aborted!" and exit 1, which means "bad input, nothing
            # changed": untrue of an interrupted run, ingest or transfer.
            common.print_error(
                "interrupted (Ctrl-C): what finished is kept, the rest was not done; run "
                "the command again to finish (`rc2 run ... --resume` for a RUN; `rc2 fsck "
                "REPO` checks the files)"
            )
            sys.exit(common.EXIT_INTERRUPTED)
        except Exception as exc:
            _exit_for_exception(exc)


#: Errors of a write that found no room: full disk, quota, file size limit, read-only.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def _exit_for_exception(exc: Exception) -> None:
    """Print ``exc`` as one line on stderr and exit with the matching code."""
    from rc2_platform.errors import Rc2Error

    if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
        raise exc  # click's main() handles a closed pipe quietly
    if isinstance(exc, Rc2Error):
        common.print_error(str(exc))
        sys.exit(common.EXIT_BAD_INPUT)
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
        common.print_error(str(exc))
        sys.exit(common.EXIT_BAD_INPUT)
    if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
        where = f" writing {exc.filename2 or exc.filename}" if exc.filename else ""
        common.print_error(
            f"{exc.strerror or exc}{where}: make room (free disk space, raise the quota or "
            "`ulimit -f`, or write elsewhere) and run the command again (`rc2 fsck REPO` "
            "checks a repository)"
        )
        sys.exit(common.EXIT_FAILURE)
    database_error = common.database_error_line(exc)
    if database_error is not None:
        common.print_error(database_error)
        sys.exit(common.EXIT_FAILURE)
    _log.debug("unexpected error", exc_info=exc)
    common.print_error(
        f"unexpected {type(exc).__name__}: {exc} (a bug: please report it; "
        "`rc2 --log-level DEBUG ...` shows the traceback)"
    )
    sys.exit(common.EXIT_FAILURE)
