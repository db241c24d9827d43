"""``rc2 run / submit / report / cancel / restart`` and the worker's ``rc2 run-cluster``."""

from __future__ import annotations

import json

import click

from rc2_platform.cli.common import emit_rows, handles_errors, json_option, stdout_console

_BACKENDS = click.Choice(["local", "htcondor", "kubernetes"])


def register(group: click.Group) -> None:
    """Add the execution commands to ``group``."""
    for command in (run, submit, register_results, report, cancel, restart, run_cluster):
        group.add_command(command)


def _print_summary(summary: object) -> None:
    from rc2_platform.execution.runner import RunSummary

    assert isinstance(summary, RunSummary)
    counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items())
    click.echo(f"RUN {summary.run}: {summary.status} ({counts}); `rc2 report` for details")


def _execute(graph: str, repo: str, config: str | None, backend: str | None, processes: int | None,
             jobs: int | None, resume: bool) -> None:  # fmt: skip
    from rc2_platform.execution.runner import RunOptions, run_graph

    options = RunOptions(backend=backend, processes=processes, jobs=jobs, resume=resume)
    summary = run_graph(graph, repo, config_path=config, options=options)
    _print_summary(summary)
    if summary.status != "succeeded":
        raise SystemExit(1)


@click.command("run")
@click.argument("graph", type=click.Path(exists=True, dir_okay=False))
@click.option("--repo", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--execution-config", "config", type=click.Path(exists=True, dir_okay=False))
@click.option("--processes", type=click.IntRange(min=1), help="Processes per cluster job.")
@click.option("--jobs", type=click.IntRange(min=1), help="Local backend: jobs at once.")
@click.option("--resume", is_flag=True, help="Skip quanta whose outputs exist in the RUN.")
@click.option("--backend", type=_BACKENDS, default="local", show_default=True)
@handles_errors
def run(graph: str, repo: str, config: str | None, processes: int | None, jobs: int | None,
        resume: bool, backend: str) -> None:  # fmt: skip
    """Execute a QuantumGraph on this machine (or a backend) and register its outputs."""
    _execute(graph, repo, config, backend, processes, jobs, resume)


@click.command("submit")
@click.argument("graph", type=click.Path(exists=True, dir_okay=False))
@click.option("--repo", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--backend", type=_BACKENDS, required=True)
@click.option("--execution-config", "config", type=click.Path(exists=True, dir_okay=False))
@click.option("--processes", type=click.IntRange(min=1), help="Processes per cluster job.")
@click.option("--resume", is_flag=True, help="Skip quanta whose outputs exist in the RUN.")
@click.option("--dagman", is_flag=True, help="HTCondor: submit the whole graph as one DAG.")
@click.option("--dag-dir", type=click.Path(file_okay=False), help="Where --dagman writes the DAG.")
@click.option("--dry-run", is_flag=True, help="With --dagman: write the DAG, submit nothing.")
@handles_errors
def submit(graph: str, repo: str, backend: str, config: str | None, processes: int | None,
           resume: bool, dagman: bool, dag_dir: str | None, dry_run: bool) -> None:  # fmt: skip
    """Execute a QuantumGraph on HTCondor or Kubernetes, cluster by cluster, and wait.

    With --dagman (HTCondor only) the whole graph becomes one DAGMan workflow and the
    command returns once it is submitted; its FINAL node runs `rc2 register-results`.
    """
    if not dagman:
        if dag_dir or dry_run:
            raise click.UsageError("--dag-dir and --dry-run need --dagman")
        _execute(graph, repo, config, backend, processes, None, resume)
        return
    if backend != "htcondor":
        raise click.UsageError(f"--dagman needs --backend htcondor, not {backend!r}")
    from rc2_platform.execution.dagman_submit import submit_graph_dag
    from rc2_platform.execution.runner import RunOptions

    options = RunOptions(backend=backend, processes=processes, resume=resume)
    sub = submit_graph_dag(
        graph, repo, config_path=config, options=options, dag_dir=dag_dir, dry_run=dry_run
    )
    click.echo(f"RUN {sub.run}: DAG {sub.dag} ({len(sub.jobs)} nodes + FINAL)")
    if sub.handle is None:
        click.echo("dry run: nothing submitted")
    else:
        click.echo(f"submitted as HTCondor cluster {sub.handle.id.split('.')[0]}")


@click.command("register-results")
@click.argument("run_name", metavar="RUN")
@click.option("--repo", required=True, type=click.Path(exists=True, file_okay=False))
@handles_errors
def register_results(run_name: str, repo: str) -> None:
    """Register the outputs of RUN's finished jobs (DAGMan FINAL node; idempotent)."""
    from rc2_platform.execution.dagman_submit import register_results as _register

    _print_summary(_register(repo, run_name))


@click.command("restart")
@click.argument("run_name", metavar="RUN")
@click.option("--repo", required=True, type=click.Path(exists=True, file_okay=False))
@handles_errors
def restart(run_name: str, repo: str) -> None:
    """Resume RUN from its journal (same graph, config and backend)."""
    from rc2_platform.execution.runner import restart_run

    summary = restart_run(repo, run_name)
    _print_summary(summary)
    if summary.status != "succeeded":
        raise SystemExit(1)


@click.command("cancel")
@click.argument("run_name", metavar="RUN")
@click.option("--repo", required=True, type=click.Path(exists=True, file_okay=False))
@handles_errors
def cancel(run_name: str, repo: str) -> None:
    """Mark RUN cancelled and cancel its unfinished jobs."""
    from rc2_platform.execution.runner import cancel_run

    names = cancel_run(repo, run_name)
    click.echo(f"RUN {run_name}: cancel requested; {len(names)} unfinished job(s)")


@click.command("report")
@click.argument("run_name", metavar="RUN")
@click.option("--repo", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--png", type=click.Path(dir_okay=False), help="Also write a PNG timeline.")
@json_option
@handles_errors
def report(run_name: str, repo: str, png: str | None, as_json: bool) -> None:
    """Per-task quantum states, errors grouped by message, and workflow statistics."""
    from rc2_platform.execution.report import build_report, write_timeline_png

    rep = build_report(repo, run_name)
    if png:
        write_timeline_png(rep, png)
    if as_json:
        click.echo(json.dumps(rep.to_json(), indent=2, default=str))
        return
    rows = [{"task": t, **c} for t, c in rep.tasks.items()]
    cols = ["task", "succeeded", "failed", "blocked", "pending", "retried"]
    emit_rows(rows, cols, as_json=False, title=f"RUN {rep.run} ({rep.status})")
    timing = [
        {"task": t, **{k: f"{v:.3f}" if isinstance(v, float) else v for k, v in s.items()}}
        for t, s in rep.timing.items()
    ]
    emit_rows(
        timing,
        ["task", "count", "min_seconds", "max_seconds", "mean_seconds", "total_seconds",
         "peak_memory_mb"],
        as_json=False,
        title="Quantum wall time and peak memory",
    )  # fmt: skip
    stdout_console.print(
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
