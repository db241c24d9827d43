"""``rc2 run / submit / report / cancel / restart`` and the worker's ``rc2 run-cluster``.

Every command takes the repository first (``rc2 run REPO GRAPH``); the old ``--repo``
is a hidden deprecated alias (see :class:`~rc2_platform.cli.common.RepoCommand`).
"""

from __future__ import annotations

import json

import click

from rc2_platform.cli.common import (
    RepoCommand,
    emit_json,
    emit_rows,
    exit_code_for_run,
    format_option,
    handles_errors,
    json_option,
    output_format,
    repo_argument,
)

_BACKENDS = click.Choice(["local", "htcondor", "kubernetes"])
_TIMING = ["count", "min_seconds", "max_seconds", "mean_seconds", "total_seconds", "peak_memory_mb"]
_CONFIG_HELP = (
    "Execution config YAML (backends, clustering, retries, memory); "
    "default: the shipped config, see docs/execution.md."
)


def _print_summary(summary: object, as_json: bool = False) -> None:
    """Print the outcome of a run (one line, or JSON) and exit with its code."""
    from rc2_platform.execution.runner import RunSummary

    assert isinstance(summary, RunSummary)
    if as_json:
        emit_json({"run": summary.run, "status": summary.status, "counts": summary.counts,
                   "journal": summary.journal})  # fmt: skip
    else:
        counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items())
        click.echo(
            f"RUN {summary.run}: {summary.status} ({counts}); "
            f"`rc2 report REPO {summary.run}` for details"
        )
    raise SystemExit(exit_code_for_run(summary.status, summary.counts))


def _execute(graph: str, repo: str, config: str | None, backend: str | None, processes: int | None,
             jobs: int | None, resume: bool, as_json: bool) -> None:  # fmt: skip
    from rc2_platform.execution.runner import RunOptions, run_graph

    options = RunOptions(backend=backend, processes=processes, jobs=jobs, resume=resume)
    summary = run_graph(graph, repo, config_path=config, options=options)
    _print_summary(summary, as_json)


@click.command("run", cls=RepoCommand)
@repo_argument
@click.argument("graph", type=click.Path(exists=True, dir_okay=False))
@click.option("--execution-config", "config", type=click.Path(exists=True, dir_okay=False),
              help=_CONFIG_HELP)  # fmt: skip
@click.option("--processes", type=click.IntRange(min=1), help="Processes per cluster job.")
@click.option("--jobs", type=click.IntRange(min=1), help="Local backend: jobs at once.")
@click.option("--resume", is_flag=True, help="Skip quanta whose outputs exist in the RUN.")
@click.option("--backend", type=_BACKENDS, default="local", show_default=True,
              help="Where the cluster jobs run.")  # fmt: skip
@json_option
@handles_errors
def run(repo: str, graph: str, config: str | None, processes: int | None, jobs: int | None,
        resume: bool, backend: str, as_json: bool) -> None:  # fmt: skip
    """Execute QuantumGraph file GRAPH and register its outputs in REPO.

    Exits 0 if every quantum succeeded, 3 if some failed (the rest are done; re-run
    with --resume or `rc2 restart`), 4 if none succeeded.
    """
    _execute(graph, repo, config, backend, processes, jobs, resume, as_json)


@click.command("submit", cls=RepoCommand)
@repo_argument
@click.argument("graph", type=click.Path(exists=True, dir_okay=False))
@click.option("--backend", type=_BACKENDS, required=True,
              help="htcondor or kubernetes (local runs here, like `rc2 run`).")  # fmt: skip
@click.option("--execution-config", "config", type=click.Path(exists=True, dir_okay=False),
              help=_CONFIG_HELP)  # fmt: skip
@click.option("--processes", type=click.IntRange(min=1), help="Processes per cluster job.")
@click.option("--resume", is_flag=True, help="Skip quanta whose outputs exist in the RUN.")
@click.option("--dagman", is_flag=True, help="HTCondor: submit the whole graph as one DAG.")
@click.option("--dag-dir", type=click.Path(file_okay=False), help="Where --dagman writes the DAG.")
@click.option("--dry-run", is_flag=True, help="With --dagman: write the DAG, submit nothing.")
@json_option
@handles_errors
def submit(repo: str, graph: str, backend: str, config: str | None, processes: int | None,
           resume: bool, dagman: bool, dag_dir: str | None, dry_run: bool,
           as_json: bool) -> None:  # fmt: skip
    """Execute QuantumGraph file GRAPH on a batch backend, cluster by cluster, and wait.

    The backend is HTCondor or Kubernetes (local also works and is `rc2 run`). With
    --dagman (HTCondor only) the whole graph becomes one DAGMan workflow and the
    command returns once it is submitted; its FINAL node runs `rc2 register-results`.
    Exit codes as `rc2 run`.
    """
    if not dagman:
        if dag_dir or dry_run:
            raise click.UsageError("--dag-dir and --dry-run need --dagman")
        _execute(graph, repo, config, backend, processes, None, resume, as_json)
        return
    if backend != "htcondor":
        raise click.UsageError(f"--dagman needs --backend htcondor, not {backend!r}")
    from rc2_platform.execution.dagman_submit import submit_graph_dag
    from rc2_platform.execution.runner import RunOptions

    options = RunOptions(backend=backend, processes=processes, resume=resume)
    sub = submit_graph_dag(
        graph, repo, config_path=config, options=options, dag_dir=dag_dir, dry_run=dry_run
    )
    if as_json:
        handle = None if sub.handle is None else sub.handle.id
        emit_json({"run": sub.run, "dag": sub.dag, "nodes": len(sub.jobs), "submitted": handle})
        return
    click.echo(f"RUN {sub.run}: DAG {sub.dag} ({len(sub.jobs)} nodes + FINAL)")
    if sub.handle is None:
        click.echo("dry run: nothing submitted")
    else:
        click.echo(f"submitted as HTCondor cluster {sub.handle.id.split('.')[0]}")


@click.command("register-results", cls=RepoCommand)
@repo_argument
@click.argument("run_name", metavar="RUN")
@json_option
@handles_errors
def register_results(repo: str, run_name: str, as_json: bool) -> None:
    """Register the outputs of RUN's finished jobs (DAGMan FINAL node; idempotent)."""
    from rc2_platform.execution.dagman_submit import register_results as _register

    _print_summary(_register(repo, run_name), as_json)


@click.command("restart", cls=RepoCommand)
@repo_argument
@click.argument("run_name", metavar="RUN")
@json_option
@handles_errors
def restart(repo: str, run_name: str, as_json: bool) -> None:
    """Resume RUN from its journal (same graph, config and backend).

    Exit codes as `rc2 run`.
    """
    from rc2_platform.execution.runner import restart_run

    _print_summary(restart_run(repo, run_name), as_json)


@click.command("cancel", cls=RepoCommand)
@repo_argument
@click.argument("run_name", metavar="RUN")
@json_option
@handles_errors
def cancel(repo: str, run_name: str, as_json: bool) -> None:
    """Mark RUN cancelled and cancel its unfinished jobs."""
    from rc2_platform.execution.runner import cancel_run

    names = cancel_run(repo, run_name)
    if as_json:
        emit_json({"run": run_name, "cancel_requested": True, "unfinished_jobs": list(names)})
    else:
        click.echo(f"RUN {run_name}: cancel requested; {len(names)} unfinished job(s)")


@click.command("report", cls=RepoCommand)
@repo_argument
@click.argument("run_name", metavar="RUN")
@click.option("--png", type=click.Path(dir_okay=False), help="Also write a PNG timeline.")
@format_option
@handles_errors
def report(repo: str, run_name: str, png: str | None, as_json: bool) -> None:
    """Per-task quantum states, errors grouped by message, and workflow statistics."""
    from rc2_platform.execution.report import build_report, write_timeline_png

    rep = build_report(repo, run_name)
    if png:
        write_timeline_png(rep, png)
    if as_json:
        click.echo(json.dumps(rep.to_json(), indent=2, default=str))
        return
    rows: list[dict[str, object]] = [{"task": t, **c} for t, c in rep.tasks.items()]
    cols = ["task", "succeeded", "failed", "blocked", "pending", "retried"]
    if output_format() == "csv":
        merged = [
            {**row, **rep.timing.get(task, {})} for row, task in zip(rows, rep.tasks, strict=True)
        ]
        emit_rows(merged, [*cols, *_TIMING], as_json=False)
        return
    emit_rows(rows, cols, as_json=False, title=f"RUN {rep.run} ({rep.status})")
    timing = [
        {"task": t, **{k: round(v, 3) if isinstance(v, float) else v for k, v in s.items()}}
        for t, s in rep.timing.items()
    ]
    emit_rows(
        timing,
        ["task", *_TIMING],
        as_json=False,
        title="Quantum wall time and peak memory",
    )  # fmt: skip
    click.echo(
        f"workflow wall time {rep.workflow_wall_seconds:.1f} s, cumulative job wall time "
        f"{rep.job_wall_seconds:.1f} s, badput {rep.badput_seconds:.1f} s"
    )
    for err in rep.errors:
        click.echo(f"{err['count']} x [{', '.join(err['tasks'])}] {err['message']}")
        for data_id in err["data_ids"][:3]:
            click.echo(f"    e.g. {data_id}")


@click.command(
    "run-cluster",
    hidden=True,
    add_help_option=False,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run_cluster(args: tuple[str, ...]) -> None:
    """Worker entry point: run one cluster's quanta and write the job's records.

    The arguments go to rc2_platform.execution.worker (``rc2 run-cluster --help``).
    """
    from rc2_platform.execution.worker import main as worker_main

    raise SystemExit(worker_main(list(args)))
