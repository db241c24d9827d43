"""``rc2 demo``: the main job on the embedded default (SQLite, local backend, tiny survey)."""

from __future__ import annotations

from pathlib import Path

import click

from rc2_platform.cli.common import emit_rows, handles_errors, stderr_console


@click.command("demo")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default="demo")
@click.option(
    "--registry-url", default=None, help="Server registry URL (default: SQLite in DIRECTORY/repo)."
)
@click.option("--seed", default=1, show_default=True, help="Seed of the synthetic survey.")
@click.option("--processes", default=1, show_default=True, help="Processes per cluster job.")
@click.option("--jobs", default=2, show_default=True, help="Cluster jobs at once (local backend).")
@handles_errors
def demo(directory: Path, registry_url: str | None, seed: int, processes: int, jobs: int) -> None:
    """Simulate the tiny survey, bootstrap a repo, build the graph, run it, validate.

    Everything goes into DIRECTORY (default ./demo); re-running resumes.
    """
    from rc2_platform.demo import run_demo

    summary = run_demo(
        directory,
        registry_url=registry_url,
        seed=seed,
        processes=processes,
        jobs=jobs,
        say=lambda line: stderr_console.print(line),
    )
    stderr_console.print(
        f"repo: {summary.repo}\ngraph: {summary.graph}\nrun: {summary.run} ({summary.status})\n"
        f"seconds per step: {summary.seconds}"
    )
    if summary.validation is not None:
        emit_rows(
            summary.validation.rows(),
            ("band", "metric", "value", "bound", "unit", "n", "result"),
            as_json=False,
            title=f"validation of {summary.run} against the truth catalog",
        )
    if summary.status != "succeeded":
        raise SystemExit(1)


def register(group: click.Group) -> None:
    """Add ``rc2 demo``."""
    group.add_command(demo)
