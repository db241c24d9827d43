"""``rc2 runs REPO``: the RUNs a repository executed, with state, counts, start and end."""

from __future__ import annotations

import fnmatch

import click

from rc2_platform.cli.common import emit_rows, format_option, repo_argument, require_repository

_COLUMNS = ["run", "status", "quanta", "succeeded", "failed", "blocked", "pending", "started",
            "ended", "starts", "backend"]  # fmt: skip


@click.command("runs")
@repo_argument
@click.argument("pattern", required=False)
@format_option
def runs(repo: str, pattern: str | None, as_json: bool) -> None:
    """List the RUNs executed from REPO (optionally matching glob PATTERN), oldest first.

    Status is succeeded, failed (some quanta failed or are blocked; the rest is done),
    cancelled, aborted, running, submitted (to DAGMan) or interrupted (no end recorded
    and the orchestrator is gone: `rc2 restart REPO RUN` resumes it). Times are UTC;
    `starts` counts the run and its restarts. `rc2 report REPO RUN` shows one in detail.
    """
    from rc2_platform.execution.run_list import list_runs

    require_repository(repo)
    rows = [r.to_row() for r in list_runs(repo)]
    if pattern:
        rows = [r for r in rows if fnmatch.fnmatchcase(r["run"], pattern)]
    emit_rows(rows, _COLUMNS, as_json=as_json)
