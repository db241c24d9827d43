"""``rc2 demo``: the main job on the embedded default (SQLite, local backend, tiny survey)."""

from __future__ import annotations

from pathlib import Path

import click

from rc2_platform.cli.common import (
    emit_json,
    emit_rows,
    exit_code_for_run,
    handles_errors,
    json_option,
    print_note,
    stderr,
)

_VALIDATION_COLUMNS = ("band", "metric", "value", "bound", "unit", "n", "result")


@click.command("demo")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default="demo")
@click.option(
    "--registry-url", default=None, help="Server registry URL (default: SQLite in DIRECTORY/repo)."
)
@click.option("--seed", default=1, show_default=True, help="Seed of the synthetic survey.")
@click.option(
    "--processes",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Processes per cluster job.",
)
@click.option(
    "--jobs",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="Cluster jobs at once (local backend).",
)
@json_option
@handles_errors
def demo(
    directory: Path, registry_url: str | None, seed: int, processes: int, jobs: int, as_json: bool
) -> None:
    """Simulate the tiny survey, bootstrap a repo, build the graph, run it, validate.

    Everything goes into DIRECTORY (default ./demo): survey/, repo/ and figures/ (the
    graph's task DAG, the run's timeline and the validation figure, whose paths it
    prints). Re-running resumes: the graph file is kept and only what is missing runs.
    Exits 0 if every quantum succeeded, 3 if some failed, 4 if none did.
    """
    from rc2_platform.demo import run_demo

    summary = run_demo(
        directory,
        registry_url=registry_url,
        seed=seed,
        processes=processes,
        jobs=jobs,
        say=lambda line: stderr().print(line, markup=False),
    )
    rows = summary.validation.rows() if summary.validation is not None else []
    if as_json:
        emit_json(
            {
                "survey": summary.survey,
                "repo": summary.repo,
                "graph": summary.graph,
                "run": summary.run,
                "status": summary.status,
                "quanta": summary.quanta,
                "counts": summary.counts,
                "seconds": summary.seconds,
                "validation": rows,
                "figures": [str(f) for f in summary.figures],
            }
        )
    else:
        print_note(f"repo: {summary.repo}\ngraph: {summary.graph}")
        print_note(
            f"run: {summary.run} ({summary.status}); `rc2 report {summary.repo}` for details"
        )
        print_note(f"seconds per step: {summary.seconds}")
        print_note("figures written:")
        for figure in summary.figures:
            print_note(f"  {figure}")
        if rows:
            emit_rows(
                rows,
                _VALIDATION_COLUMNS,
                as_json=False,
                title=f"validation of {summary.run} against the truth catalog",
            )
    raise SystemExit(exit_code_for_run(summary.status, summary.counts))
