"""Whole-graph submission as one HTCondor DAGMan workflow, and registering its results.

:func:`submit_graph_dag` (``rc2 submit GRAPH --backend htcondor --dagman``) prepares the
run exactly as the waiting orchestrator does (it *uses* :class:`runner._Orchestrator`:
dataset types, RUN, init-outputs, input records, per-cluster job graphs and worker
commands), then writes ONE DAG: a node per cluster, ``PARENT/CHILD`` from the cluster
plan, ``RETRY`` from the retry policy, and a ``FINAL`` node running
``rc2 register-results RUN --repo REPO``. Nothing waits: DAGMan runs the nodes.

:func:`register_results` (``rc2 register-results``) reads the job result files the
nodes wrote, registers the succeeded quanta's outputs (one transaction per job,
idempotent) and appends the journal events ``rc2 report`` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rc2_platform.butler import Butler
from rc2_platform.errors import ClusterJobError, ExecutionError
from rc2_platform.execution.backends import ClusterJob, JobHandle, make_backend
from rc2_platform.execution.execution_config import ExecutionConfig, load_execution_config
from rc2_platform.execution.executor import FAILED, SUCCEEDED, QuantumOutcome
from rc2_platform.execution.job import JobResult
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.registration import output_refs_by_id, register_outcomes
from rc2_platform.execution.runner import RunOptions, RunSummary, _Orchestrator, worker_command
from rc2_platform.graph.io import load_graph

__all__ = ["FINAL_NODE", "DagSubmission", "register_results", "submit_graph_dag"]

#: Name of the DAG's FINAL node (registers every finished job's outputs).
FINAL_NODE = "register-results"


@dataclass
class DagSubmission:
    """What :func:`submit_graph_dag` wrote and submitted.

    Attributes
    ----------
    run : str
        The graph's output RUN.
    dag : Path
        The ``.dag`` file (node submit files in ``<dag dir>/jobs/``).
    jobs : list of ClusterJob
        One DAG node per cluster with quanta to run, in plan (stage) order.
    dependencies : dict
        ``{cluster: {parent cluster, ...}}`` as written to ``PARENT/CHILD`` lines.
    final : ClusterJob
        The FINAL node (``rc2 register-results``).
    handle : JobHandle or None
        The DAGMan job's handle; None with ``dry_run``.
    journal : Path
        The run's journal file.
    """

    run: str
    dag: Path
    jobs: list[ClusterJob]
    dependencies: dict[str, set[str]]
    final: ClusterJob
    handle: JobHandle | None
    journal: Path


def submit_graph_dag(
    graph_path: str | Path,
    repo: str | Path,
    *,
    config: ExecutionConfig | None = None,
    config_path: str | Path | None = None,
    options: RunOptions | None = None,
    backend: Any = None,
    dag_dir: str | Path | None = None,
    dry_run: bool = False,
) -> DagSubmission:
    """Prepare the run, write one DAGMan workflow for the whole graph and submit it.

    Parameters
    ----------
    graph_path : str or Path
        The ``.qgraph`` file.
    repo : str or Path
        Repository root.
    config, config_path
        Execution config (loaded from ``config_path`` or the packaged default if None).
    options : RunOptions, optional
        ``processes``, ``resume`` and ``executable`` are used; the backend is HTCondor.
    backend : HTCondorBackend, optional
        A ready backend (tests: with a ``LocalScheddDouble``); built from the config if None.
    dag_dir : str or Path, optional
        Where the DAG goes; ``REPO/_runs/<run>/dag`` if None.
    dry_run : bool
        Only write (and journal) the files; submit nothing.

    Returns
    -------
    DagSubmission

    Raises
    ------
    ExecutionError
        If the backend is not HTCondor or no cluster has quanta left to run.
    JobSubmissionError
        If the DAG cannot be submitted (e.g. ``condor_dagman`` not installed).
    """
    from rc2_platform.execution.backends.htcondor import HTCondorBackend, write_dag

    options = options or RunOptions()
    options.backend = "htcondor"
    config = config or load_execution_config(config_path)
    backend = backend or make_backend(config, "htcondor")
    if not isinstance(backend, HTCondorBackend):
        raise ExecutionError(
            f"DAGMan submission needs the htcondor backend, not {backend.name!r}; "
            "use `rc2 submit --backend htcondor --dagman`"
        )
    with Butler(repo) as butler:
        orch = _Orchestrator(Path(graph_path).resolve(), butler, config, options, backend)
        orch.journal.append(
            "options",
            config_path=None if config_path is None else str(Path(config_path).resolve()),
            jobs=None,
            backend=backend.name,
            dagman=True,
        )
        orch.prepare()
        made = _make_jobs(orch)
        names = {job.name for job, _ in made}
        deps = {job.name: orch.plan.parents[job.name] & names for job, _ in made}
        jobs = [job for job, _ in made]
        final = _final_job(orch, worker_command(options.executable))
        directory = Path(dag_dir) if dag_dir else orch.journal.directory / "dag"
        dag_name = f"rc2-{orch.journal.directory.name}"
        handle: JobHandle | None = None
        if dry_run:
            dag = write_dag(jobs, deps, directory, backend.settings, backend.retry, dag_name, final)
        else:
            handle = backend.submit_dag(jobs, deps, directory, dag_name, final)
            dag = Path(handle.info["dag"])
        for job, attempt in made:
            attempt.handle = JobHandle(
                id=handle.id if handle else "",
                job_name=job.name,
                backend=backend.name if handle else "local",  # nothing to cancel if dry
                info={"dag": str(dag), "dag_node": job.name},
            )
            orch._journal_submit(job, attempt)
        orch.journal.append(
            "dag_submitted",
            dag=str(dag),
            dry_run=dry_run,
            handle=None if handle is None else handle.to_dict(),
            nodes=len(jobs),
        )
        return DagSubmission(
            orch.graph.output_run, dag, jobs, deps, final, handle, orch.journal.path
        )


def _make_jobs(orch: _Orchestrator) -> list[tuple[ClusterJob, Any]]:
    """One job per cluster with quanta to run (the orchestrator's own job builder)."""
    made = []
    for stage in orch.plan.stages:
        for name in orch.plan.in_stage(stage):
            todo = orch._runnable(name)
            if todo:
                made.append(orch._make_job(name, todo))
    if not made:
        raise ExecutionError(
            f"every quantum of RUN {orch.graph.output_run!r} already has its outputs "
            "registered; nothing to submit"
        )
    return made


def _final_job(orch: _Orchestrator, prefix: list[str]) -> ClusterJob:
    directory = orch.journal.directory / "dag" / "final"
    directory.mkdir(parents=True, exist_ok=True)
    run, repo = orch.graph.output_run, str(orch.butler.root)
    return ClusterJob(
        name=FINAL_NODE,
        command=[*prefix, "register-results", run, "--repo", repo],
        request_memory_mb=2048,
        request_cpus=1,
        labels={"run": run, "stage": "final"},
        working_dir=directory,
        log_dir=directory,
    )


def register_results(repo: str | Path, run: str) -> RunSummary:
    """Register the outputs of every finished job of a DAGMan run and journal them.

    Reads each submitted cluster job's ``result.json`` (latest attempt per cluster);
    registers the succeeded quanta's outputs in one transaction per job (already
    registered datasets are skipped, so running it again is harmless); records jobs
    without a result as died, or their quanta as blocked when an upstream quantum
    failed; ends with a ``run_finished`` event.

    Raises
    ------
    RunNotFoundError
        If ``run`` has no journal in ``repo``.
    ExecutionError
        If the journal has no ``run_started`` event.
    """
    journal = Journal.for_run(repo, run, must_exist=True)
    started = journal.last("run_started")
    if started is None:
        raise ExecutionError(f"the journal of RUN {run!r} has no run_started event; submit it")
    graph = load_graph(started["graph"])
    refs_by_id = output_refs_by_id(graph)
    submitted: dict[str, dict[str, Any]] = {}
    for ev in journal.events("job_submitted"):
        submitted[ev["cluster"]] = ev
    finished = list(journal.events("job_finished"))
    done = {(ev["cluster"], ev["attempt"]) for ev in finished if not ev["died"]}
    journaled = {(ev["cluster"], ev["attempt"]) for ev in finished}
    state: dict[int, str] = {}
    for ev in journal.events("quanta_skipped"):
        state.update({i: SUCCEEDED for i, _task in ev["quanta"]})
    with Butler(repo) as butler:
        for ev in submitted.values():
            outcomes = _read_outcomes(Path(ev["directory"]) / "result.json")
            if outcomes is None:
                key = (ev["cluster"], ev["attempt"])
                _record_missing(journal, graph.upstream, ev, state, key in journaled)
                continue
            state.update({o.index: o.status for o in outcomes})
            if (ev["cluster"], ev["attempt"]) in done:
                continue
            registered = register_outcomes(butler, outcomes, refs_by_id)
            journal.append(
                "job_finished",
                cluster=ev["cluster"],
                attempt=ev["attempt"],
                status={"state": "SUCCEEDED", "exit_code": 0},
                result=str(Path(ev["directory"]) / "result.json"),
                died=False,
                registered=registered,
            )
    counts = {"succeeded": 0, "failed": 0, "blocked": 0, "pending": 0}
    for i in range(len(graph)):
        counts[state.get(i, "pending")] += 1
    status = "succeeded" if counts["succeeded"] == len(graph) else "failed"
    journal.append("run_finished", status=status, counts=counts)
    return RunSummary(run, status, counts, journal.path)


def _read_outcomes(path: Path) -> list[QuantumOutcome] | None:
    if not path.exists():
        return None
    try:
        return JobResult.read(path).outcomes
    except ClusterJobError:
        return None


def _record_missing(
    journal: Journal,
    upstream: Sequence[frozenset[int]],
    ev: dict[str, Any],
    state: dict[int, str],
    finished: bool,
) -> None:
    """A node without a result: blocked behind a failed parent node, else died.

    The whole node counts as blocked when any of its quanta reads from a failed or
    blocked quantum of another node (DAGMan does not run children of failed nodes).
    """
    own = {i for i, _task, _data_id in ev["quanta"]}
    blocked: list[list[Any]] = []
    for i, task, data_id in ev["quanta"]:
        bad = [u for u in upstream[i] if u not in own and state.get(u) in (FAILED, "blocked")]
        if bad:
            blocked.append([i, task, data_id, bad[0]])
    if blocked:
        blocked_by = blocked[0][3]
        seen = {b[0] for b in blocked}
        blocked += [[i, t, d, blocked_by] for i, t, d in ev["quanta"] if i not in seen]
        state.update({b[0]: "blocked" for b in blocked})
        journal.append("quanta_blocked", quanta=blocked)
        return
    died = [i for i, _task, _data_id in ev["quanta"]]
    state.update({i: FAILED for i in died})
    if not finished:
        journal.append(
            "job_finished",
            cluster=ev["cluster"],
            attempt=ev["attempt"],
            status={"state": "FAILED", "reason": "the DAG node wrote no result file"},
            result=None,
            died=True,
            registered=0,
        )
