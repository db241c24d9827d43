"""``rc2 run / submit / aggregate / report / provenance / cancel / restart``, the worker's
``rc2 run-cluster`` and the DAG nodes' POST script ``rc2 dagman-post``.

Every command takes the repository first (``rc2 run REPO GRAPH``); the old ``--repo``
is a hidden deprecated alias (see :class:`~rc2_platform.cli.common.RepoCommand`).
"""

from __future__ import annotations

import json
from typing import Any

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
    print_note,
    repo_argument,
    require_repository,
)

_BACKENDS = click.Choice(["local", "htcondor", "kubernetes"])
_TIMING = ["count", "succeeded", "failed", "blocked", "min_seconds", "max_seconds", "mean_seconds",
           "total_seconds", "cpu_seconds", "peak_memory_mb"]  # fmt: skip
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
             jobs: int | None, flags: dict[str, bool], as_json: bool) -> None:  # fmt: skip
    from rc2_platform.cli.progress import run_progress
    from rc2_platform.execution.runner import RunOptions, run_graph

    with run_progress(enabled=not as_json) as progress:
        options = RunOptions(
            backend=backend, processes=processes, jobs=jobs, resume=flags["resume"],
            extend_run=flags["extend_run"], takeover=flags["takeover"], progress=progress,
        )  # fmt: skip
        summary = run_graph(graph, repo, config_path=config, options=options)
    _print_summary(summary, as_json)


_RESUME_HELP = (
    "Continue the graph's RUN: register what earlier jobs recorded, skip quanta whose "
    "outputs are registered."
)
_EXTEND_HELP = (
    "Run into a RUN that already holds outputs (another graph's), skipping quanta whose "
    "outputs exist. Without this or --resume a RUN holding outputs is refused."
)
_TAKEOVER_HELP = (
    "Take the RUN's lock from a holder that is not known to be dead (a crashed "
    "orchestrator on another host, a DAGMan or Dagster run that is gone)."
)


def _run_flags(func: Any) -> Any:
    for option in reversed(
        [
            click.option("--resume", is_flag=True, help=_RESUME_HELP),
            click.option("--extend-run", is_flag=True, help=_EXTEND_HELP),
            click.option("--takeover", is_flag=True, help=_TAKEOVER_HELP),
        ]
    ):
        func = option(func)
    return func


@click.command("run", cls=RepoCommand)
@repo_argument
@click.argument("graph", type=click.Path(exists=True, dir_okay=False))
@click.option("--execution-config", "config", type=click.Path(exists=True, dir_okay=False),
              help=_CONFIG_HELP)  # fmt: skip
@click.option("--processes", type=click.IntRange(min=1), help="Processes per cluster job.")
@click.option("--jobs", type=click.IntRange(min=1), help="Local backend: jobs at once.")
@_run_flags
@click.option("--backend", type=_BACKENDS, default="local", show_default=True,
              help="Where the cluster jobs run.")  # fmt: skip
@json_option
@handles_errors
def run(repo: str, graph: str, config: str | None, processes: int | None, jobs: int | None,
        resume: bool, extend_run: bool, takeover: bool, backend: str,
        as_json: bool) -> None:  # fmt: skip
    """Execute QuantumGraph file GRAPH and register its outputs in REPO.

    One orchestrator at a time holds the graph's RUN (a lock in REPO/_runs/<RUN>/ naming
    host, pid and command); a RUN that already holds outputs needs --resume or
    --extend-run. Exits 0 if every quantum succeeded, 3 if some failed (the rest are
    done; `rc2 report REPO RUN` names them; re-run with --resume or `rc2 restart`), 4 if
    none succeeded, 1 if refused (bad input, RUN held or holding outputs).
    """
    flags = {"resume": resume, "extend_run": extend_run, "takeover": takeover}
    _execute(graph, repo, config, backend, processes, jobs, flags, as_json)


@click.command("submit", cls=RepoCommand)
@repo_argument
@click.argument("graph", type=click.Path(exists=True, dir_okay=False))
@click.option("--backend", type=_BACKENDS, required=True,
              help="htcondor or kubernetes (local runs here, like `rc2 run`).")  # fmt: skip
@click.option("--execution-config", "config", type=click.Path(exists=True, dir_okay=False),
              help=_CONFIG_HELP)  # fmt: skip
@click.option("--processes", type=click.IntRange(min=1), help="Processes per cluster job.")
@_run_flags
@click.option("--dagman", is_flag=True, help="HTCondor: submit the whole graph as one DAG.")
@click.option("--dag-dir", type=click.Path(file_okay=False), help="Where --dagman writes the DAG.")
@click.option("--dry-run", is_flag=True, help="With --dagman: write the DAG, submit nothing.")
@json_option
@handles_errors
def submit(repo: str, graph: str, backend: str, config: str | None, processes: int | None,
           resume: bool, extend_run: bool, takeover: bool, dagman: bool, dag_dir: str | None,
           dry_run: bool, as_json: bool) -> None:  # fmt: skip
    """Execute QuantumGraph file GRAPH on a batch backend, cluster by cluster, and wait.

    The backend is HTCondor or Kubernetes (local also works and is `rc2 run`). With
    --dagman (HTCondor only) the whole graph becomes one DAGMan workflow and the
    command returns once it is submitted; the DAG holds the RUN's lock until its FINAL
    node (`rc2 aggregate REPO RUN --finish`) settles the RUN. Exit codes as `rc2 run`.
    """
    flags = {"resume": resume, "extend_run": extend_run, "takeover": takeover}
    if not dagman:
        if dag_dir or dry_run:
            raise click.UsageError("--dag-dir and --dry-run need --dagman")
        _execute(graph, repo, config, backend, processes, None, flags, as_json)
        return
    if backend != "htcondor":
        raise click.UsageError(f"--dagman needs --backend htcondor, not {backend!r}")
    from rc2_platform.execution.dagman_submit import submit_graph_dag
    from rc2_platform.execution.runner import RunOptions

    options = RunOptions(
        backend=backend, processes=processes, resume=resume, extend_run=extend_run,
        takeover=takeover,
    )  # fmt: skip
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


@click.command("aggregate", cls=RepoCommand)
@repo_argument
@click.argument("run_name", metavar="RUN")
@click.option(
    "--finish",
    is_flag=True,
    help="Also settle the RUN from its job records, journal its end and free its lock "
    "(DAGMan's FINAL node).",
)
# The default is aggregate.DEFAULT_BATCH_SIZE (that module is imported lazily).
@click.option("--batch-size", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Datasets per registry transaction (one closes at the first job that "
              "reaches it: a job's outputs are never split).")  # fmt: skip
@click.option("--no-provenance", is_flag=True, help="Do not rewrite the run_provenance dataset.")
@json_option
@handles_errors
def aggregate(repo: str, run_name: str, finish: bool, batch_size: int, no_provenance: bool,
              as_json: bool) -> None:  # fmt: skip
    """Register the outputs that RUN's finished jobs recorded (idempotent, restartable).

    Reads the per-quantum records the jobs wrote under REPO/_runs/<RUN>/jobs/ and
    registers every succeeded quantum's outputs in batches; datasets already registered
    are skipped, so it can run while jobs still run (it picks up newly finished ones),
    after they end, or again after being killed. Then it rewrites the RUN's provenance
    dataset (run_provenance: one row per quantum attempt; `rc2 provenance` queries it).
    """
    if finish:
        from rc2_platform.execution.dagman_submit import register_results as finish_run

        _print_summary(finish_run(repo, run_name), as_json)
        return
    from rc2_platform.execution.aggregate import aggregate_run

    summary = aggregate_run(repo, run_name, provenance=not no_provenance, batch_size=batch_size)
    if as_json:
        emit_json(summary.to_json())
        return
    rate = summary.registered / summary.seconds if summary.seconds else 0.0
    click.echo(
        f"RUN {run_name}: {summary.quanta} new quantum records in {summary.files} job "
        f"file(s) ({summary.manifests} read through their outputs manifest); {summary.registered} of {summary.datasets} outputs newly registered in "
        f"{summary.seconds:.2f} s ({rate:,.0f}/s)"
        + ("" if summary.provenance_rows is None else
           f"; run_provenance: {summary.provenance_rows} rows")
    )  # fmt: skip


@click.command("register-results", cls=RepoCommand, hidden=True)
@repo_argument
@click.argument("run_name", metavar="RUN")
@json_option
@handles_errors
def register_results(repo: str, run_name: str, as_json: bool) -> None:
    """Deprecated name of `rc2 aggregate REPO RUN --finish`."""
    from rc2_platform.execution.dagman_submit import register_results as _register

    _print_summary(_register(repo, run_name), as_json)


@click.command("restart", cls=RepoCommand)
@repo_argument
@click.argument("run_name", metavar="RUN")
@click.option("--takeover", is_flag=True, help=_TAKEOVER_HELP)
@json_option
@handles_errors
def restart(repo: str, run_name: str, takeover: bool, as_json: bool) -> None:
    """Resume RUN from its journal (same graph, config and backend).

    Registers what earlier jobs recorded and skips quanta whose outputs are registered;
    the lock of an orchestrator that died on this host is taken over. Exit codes as
    `rc2 run`.
    """
    from rc2_platform.cli.progress import run_progress
    from rc2_platform.execution.runner import restart_run

    with run_progress(enabled=not as_json) as progress:
        summary = restart_run(repo, run_name, takeover=takeover, progress=progress)
    _print_summary(summary, as_json)


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
@click.argument("run_name", metavar="[RUN]", required=False)
@click.option("--png", type=click.Path(dir_okay=False), help="Also write a PNG timeline.")
@format_option
@handles_errors
def report(repo: str, run_name: str | None, png: str | None, as_json: bool) -> None:
    """Quantum states per task, failures grouped by error, and the per-task statistics.

    Reads RUN's provenance (the job records, or the run_provenance dataset once the job
    folders are gone) and journal; says whether the orchestrator is running, ended, or
    died (its process is gone). Wall time runs from the first start to the last end.
    Each example failure names its attempt's job stderr file (the attempt's own: a
    retry writes its own files). Each job attempt killed for memory is one line with the
    cause and the memory its retry requests (or "not retried" when it ran at the cap).
    Without RUN, reports the RUN started last in REPO (`rc2 runs REPO` lists them).
    """
    from rc2_platform.execution.report import STATES, build_report, write_timeline_png

    if run_name is None:
        run_name = _newest_run(repo)
    rep = build_report(repo, run_name)
    if png:
        write_timeline_png(rep, png)
    if as_json:
        click.echo(json.dumps(rep.to_json(), indent=2, default=str))
        return
    rows: list[dict[str, object]] = [{"task": t, **c} for t, c in rep.tasks.items()]
    cols = ["task", *STATES, "retried"]
    if output_format() == "csv":
        merged = [
            {**row, **{f"attempts_{k}": v for k, v in rep.timing.get(task, {}).items()}}
            for row, task in zip(rows, rep.tasks, strict=True)
        ]
        emit_rows(merged, [*cols, *(f"attempts_{k}" for k in _TIMING)], as_json=False)
        return
    title = f"RUN {rep.run}: {rep.status} (orchestrator: {rep.orchestrator})"
    emit_rows(rows, cols, as_json=False, title=title)
    timing = [
        {"task": t, **{k: round(v, 3) if isinstance(v, float) else v for k, v in s.items()}}
        for t, s in rep.timing.items()
    ]
    emit_rows(timing, ["task", *_TIMING], as_json=False,
              title="Attempts per task: wall seconds, CPU seconds, peak memory (MiB)")  # fmt: skip
    click.echo(
        f"workflow wall time {rep.workflow_wall_seconds:.1f} s (first start to last end), "
        f"cumulative job wall time {rep.job_wall_seconds:.1f} s, badput "
        f"{rep.badput_seconds:.1f} s"
    )
    for line in rep.memory_lines():
        click.echo(line)
    for err in rep.errors:
        click.echo(
            f"{err['count']} failed [{', '.join(err['tasks'])}] {err['exception_type']}: "
            f"{err['message']}"
        )
        for q in err["quanta"][:3]:
            click.echo(f"    {q['task']} {q['data_id']} (cluster {q['cluster']}, attempt "
                       f"{q['attempt']})")  # fmt: skip
            if q.get("stderr"):
                click.echo(f"      job stderr: {q['stderr']}")
    if rep.errors:
        click.echo(f"details: rc2 provenance {repo} {run_name} --state failed")


_PROVENANCE_COLUMNS = ["task", "data_id", "state", "attempt", "cluster", "host",
                       "wall_seconds", "exception_type", "message"]  # fmt: skip


@click.command("provenance", cls=RepoCommand)
@repo_argument
@click.argument("run_name", metavar="RUN")
@click.option("--task", "tasks", multiple=True, help="Only this task label (repeatable).")
@click.option("--state", "states", multiple=True,
              type=click.Choice(["pending", "running", "succeeded", "failed", "blocked"]),
              help="Only quanta in this state (repeatable).")  # fmt: skip
@click.option("--where", default="", help="Where-expression over the quantum's data ID "
              "(e.g. \"band = 'g' AND patch = 40\"); task, state, cluster, host, "
              "exception_type, attempt work too.")  # fmt: skip
@click.option("--bind", "binds", multiple=True, metavar="NAME=VALUE",
              help="Value of a :NAME in --where (repeatable).")  # fmt: skip
@click.option("--all-attempts", is_flag=True, help="Every attempt, not only each quantum's latest.")
@click.option("--upstream-of", "upstream", metavar="DATASET_TYPE",
              help="Lineage: what fed the DATASET_TYPE datasets --where selects (e.g. the raws "
              "of a deepCoadd).")  # fmt: skip
@click.option("--downstream-of", "downstream", metavar="DATASET_TYPE",
              help="Lineage: what the DATASET_TYPE datasets --where selects fed (e.g. what a "
              "raw fed).")  # fmt: skip
@click.option("--type", "types", multiple=True, metavar="DATASET_TYPE",
              help="With a lineage: only these dataset types at the end (repeatable).")  # fmt: skip
@format_option
@handles_errors
def provenance(repo: str, run_name: str, tasks: tuple[str, ...], states: tuple[str, ...],
               where: str, binds: tuple[str, ...], all_attempts: bool, upstream: str | None,
               downstream: str | None, types: tuple[str, ...], as_json: bool) -> None:  # fmt: skip
    """Query RUN's provenance: one row per quantum attempt, or a lineage.

    Rows: task, data ID, state, attempt, cluster, host, seconds and the failure (type and
    first lines of the message), filtered by --task, --state and --where. With
    --upstream-of / --downstream-of: the lineage of the datasets --where selects, e.g.
    `--upstream-of deepCoadd --where "patch = 40 AND band = 'g'" --type raw` (which raws
    fed it) or `--downstream-of raw --where "exposure = 1228 AND detector = 49"` (what
    it fed).
    """
    from rc2_platform.provenance_query import lineage, query_provenance

    bind = _parse_binds(binds)
    if upstream and downstream:
        raise click.UsageError("give one of --upstream-of and --downstream-of")
    if upstream or downstream:
        result = lineage(
            repo, run_name, str(upstream or downstream), where=where, bind=bind,
            direction="upstream" if upstream else "downstream", types=types,
        )  # fmt: skip
        if as_json:
            emit_json(result.to_json())
            return
        rows_out = [
            {"type": t, "data_id": d["data_id"], "run": d.get("run"), "id": d["id"]}
            for t, items in result.datasets.items()
            for d in items
        ]
        title = (f"{result.direction} of {len(result.start)} {upstream or downstream} "
                 f"dataset(s): {len(result.quanta)} quanta")  # fmt: skip
        emit_rows(rows_out, ["type", "data_id", "run", "id"], as_json=False, title=title)
        return
    rows = query_provenance(
        repo, run_name, task=tasks, state=states, where=where, bind=bind,
        latest=not all_attempts,
    )  # fmt: skip
    if as_json:
        emit_json(rows)
        return
    shown = [
        {
            **r,
            "wall_seconds": None if r["wall_seconds"] is None else round(r["wall_seconds"], 3),
            "message": (r["message"] or "").splitlines()[0][:120] if r["message"] else "",
        }
        for r in rows
    ]
    emit_rows(shown, _PROVENANCE_COLUMNS, as_json=False, title=f"RUN {run_name}: {len(rows)} rows")


def _parse_binds(binds: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in binds:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--bind")
        out[name] = int(value) if value.lstrip("-").isdigit() else value
    return out


def _newest_run(repo: str) -> str:
    from rc2_platform.errors import RunNotFoundError
    from rc2_platform.execution.run_list import newest_run

    require_repository(repo)
    newest = newest_run(repo)
    if newest is None:
        raise RunNotFoundError(
            f"no RUN was executed from repository {repo}; start one with `rc2 run {repo} GRAPH`"
        )
    print_note(f"report of the newest RUN, {newest.run} (`rc2 runs {repo}` lists all)")
    return newest.run


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


@click.command("dagman-post", cls=RepoCommand, hidden=True)
@repo_argument
@click.argument("run_name", metavar="RUN")
@click.argument("node", metavar="NODE")
@click.option("--attempt", type=click.IntRange(min=1), required=True,
              help="The attempt the node's first run ran (its job's --attempt).")  # fmt: skip
@click.option("--return", "exit_code", type=int, required=True,
              help="Exit status of the node's job (DAGMan's $RETURN).")  # fmt: skip
@click.option("--retry", type=click.IntRange(min=0), required=True,
              help="Retries of the node so far (DAGMan's $RETRY, 0 the first time).")  # fmt: skip
@click.option("--max-retries", type=click.IntRange(min=0), required=True,
              help="The node's RETRY count (DAGMan's $MAX_RETRIES).")  # fmt: skip
@json_option
def dagman_post(repo: str, run_name: str, node: str, attempt: int, exit_code: int, retry: int,
                max_retries: int, as_json: bool) -> None:  # fmt: skip
    """POST script of a DAGMan node of RUN: settle its job's attempt, decide on a retry.

    `rc2 submit --dagman` writes it for every cluster node (SCRIPT POST NODE rc2
    dagman-post REPO RUN NODE --attempt N --return $RETURN --retry $RETRY --max-retries
    $MAX_RETRIES, and RETRY NODE M UNLESS-EXIT 2); DAGMan runs it after each run of the
    node's job and takes its exit status as the node's. It settles attempt N + $RETRY
    from the records the job wrote, as `rc2 run` settles a job (retry policy of the
    submission: retry.max_retries, retry.tasks, retry.not_retried), and exits:

    \b
    0  done: every quantum succeeded, or the failures are final (not retried by the
       policy, or retries used up); the node's children run, the quanta behind a
       failure are blocked there.
    1  retry: quanta failed with a retriable error (or the job died) and retries are
       left; the next attempt, those quanta and the ones blocked behind them, is
       prepared (with more memory after a memory failure: SIGKILL, MemoryError, or
       removed after memory holds), the node's submit file is rewritten for it, and
       DAGMan reruns the node.
    2  failed for good: the job died and nothing is left to retry (also a job its
       periodic_remove removed after a hold for good: the hold is the quanta's error),
       or the node could not be settled (message on stderr); DAGMan does not rerun it
       (UNLESS-EXIT 2) and its children do not run.

    Running it again settles nothing twice, and completes what a run of it killed
    half-way left undone (the retry of an attempt it had settled).
    """
    from rc2_platform.execution.dagman_post import PostVerdict, settle_dag_node

    try:
        result = settle_dag_node(
            repo, run_name, node, first_attempt=attempt, exit_code=exit_code, retry=retry,
            max_retries=max_retries,
        )  # fmt: skip
    except Exception as exc:  # any failure to settle: the node fails, DAGMan stops retrying
        click.echo(f"Error: {type(exc).__name__}: {exc}", err=True)
        raise SystemExit(int(PostVerdict.FAILED)) from None
    if as_json:
        emit_json({
            "cluster": result.cluster, "attempt": result.attempt,
            "verdict": result.verdict.name.lower(), "exit_code": int(result.verdict),
            "counts": result.counts, "died": result.died,
            "retry": None if result.retry is None else result.retry.attempt,
            "final_failures": result.final_failures,
        })  # fmt: skip
    else:
        click.echo(result.summary())
    raise SystemExit(int(result.verdict))
