"""Whole-graph submission as one HTCondor DAGMan workflow, and registering its results.

:func:`submit_graph_dag` (``rc2 submit GRAPH --backend htcondor --dagman``) is a driver
of the run-state machine (:class:`~rc2_platform.execution.run_state.RunState`): it
prepares the RUN and makes every cluster's first job attempt up front (job graphs and
worker commands, exactly as the local loop makes them), then writes ONE DAG: a node per
cluster, ``PARENT/CHILD`` from the cluster plan, ``RETRY`` from the retry policy, a
``SCRIPT POST`` per node (``rc2 dagman-post``, :mod:`~rc2_platform.execution.dagman_post`:
it settles the node's attempt and has DAGMan retry the node while quanta failed with a
retriable error) and a ``FINAL`` node running ``rc2 aggregate REPO RUN --finish``.
Nothing waits: DAGMan runs the nodes.

:func:`register_results` (``rc2 aggregate --finish``; ``rc2 register-results`` is its
old name) settles each node's attempt in the
run-state machine from the records its job wrote, registers the succeeded quanta's
outputs (idempotent) and appends the journal events ``rc2 report`` reads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rc2_platform.butler import Butler
from rc2_platform.errors import ExecutionError
from rc2_platform.execution.aggregate import aggregate_run
from rc2_platform.execution.backends import ClusterJob, JobHandle, JobState, JobStatus, make_backend
from rc2_platform.execution.dagman_post import PostVerdict, load_dag_state, node_jobs, post_command
from rc2_platform.execution.execution_config import ExecutionConfig, load_execution_config
from rc2_platform.execution.run_lock import release_lock
from rc2_platform.execution.run_state import (
    JobAttempt,
    QuantumState,
    RunState,
    RunStatus,
    WorkerSettings,
)
from rc2_platform.execution.runner import RunOptions, RunSummary, worker_command

__all__ = ["FINAL_NODE", "DagSubmission", "register_results", "submit_graph_dag"]

#: Name of the DAG's FINAL node (``rc2 aggregate REPO RUN --finish``).
FINAL_NODE = "aggregate"


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
        The FINAL node (``rc2 aggregate REPO RUN --finish``).
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
    from rc2_platform.execution.backends.htcondor import HTCondorBackend

    options = options or RunOptions()
    options.backend = "htcondor"
    config = config or load_execution_config(config_path)
    backend = backend or make_backend(config, "htcondor")
    if not isinstance(backend, HTCondorBackend):
        raise ExecutionError(
            f"DAGMan submission needs the htcondor backend, not {backend.name!r}; "
            "use `rc2 submit --backend htcondor --dagman`"
        )
    worker = WorkerSettings(
        worker_command(options.executable),
        options.processes or config.processes_per_job,
        backend.name,
    )
    with Butler(repo) as butler:
        state = RunState.load(graph_path, butler.root, config, worker)
        state.journal.append(
            "options",
            config_path=None if config_path is None else str(Path(config_path).resolve()),
            jobs=None,
            backend=backend.name,
            dagman=True,
            config=config.model_dump(mode="json"),  # what the POST scripts and FINAL use
        )
        state.prepare(
            butler, resume=options.resume, extend_run=options.extend_run,
            takeover=options.takeover, owner=dag_owner(state.journal.directory),
            command=f"DAGMan workflow of {state.run} (rc2 submit --dagman)",
        )  # fmt: skip
    try:
        return _write_and_submit(state, backend, worker, dag_dir, dry_run)
    except BaseException:
        state.finish(RunStatus.ABORTED)  # nothing runs: free the RUN
        raise


def dag_owner(run_dir: Path) -> str:
    """The RUN-lock token of a RUN's DAGMan workflow (its FINAL node releases it)."""
    return f"dagman:{run_dir.name}"


def _write_and_submit(
    state: RunState, backend: Any, worker: WorkerSettings, dag_dir: str | Path | None,
    dry_run: bool,
) -> DagSubmission:  # fmt: skip
    from rc2_platform.execution.backends.htcondor import write_dag

    attempts = _make_attempts(state)
    names = {a.cluster for a in attempts}
    deps = {a.cluster: state.plan.parents[a.cluster] & names for a in attempts}
    jobs = [a.job for a in attempts]
    final = _final_job(state, worker.command)
    directory = Path(dag_dir) if dag_dir else state.journal.directory / "dag"
    dag_name = f"rc2-{state.journal.directory.name}"
    post = {
        a.cluster: post_command(worker.command, state.repo, state.run, a.cluster, a.attempt)
        for a in attempts
    }
    node_options: dict[str, Any] = {
        "post_scripts": post, "retry_unless_exit": int(PostVerdict.FAILED)
    }  # fmt: skip
    handle: JobHandle | None = None
    if dry_run:
        dag = write_dag(
            jobs, deps, directory, backend.settings, backend.retry, dag_name, final,
            **node_options,
        )  # fmt: skip
    else:
        handle = backend.submit_dag(jobs, deps, directory, dag_name, final, **node_options)
        dag = Path(handle.info["dag"])
    for attempt in attempts:
        node = JobHandle(
            id=handle.id if handle else "",
            job_name=attempt.cluster,
            backend=backend.name if handle else "local",  # nothing to cancel if dry
            info={"dag": str(dag), "dag_node": attempt.cluster},
        )
        state.submitted(attempt, node)
    state.journal.append(
        "dag_submitted",
        dag=str(dag),
        dry_run=dry_run,
        handle=None if handle is None else handle.to_dict(),
        nodes=len(jobs),
    )
    return DagSubmission(state.run, dag, jobs, deps, final, handle, state.journal.path)


def _make_attempts(state: RunState) -> list[JobAttempt]:
    """One job per cluster with quanta to run, in stage order (nothing has failed yet).

    Each job's command ends with ``--dag-retry $(rc2_retry)``: DAGMan's retry R of the
    node runs the attempt its POST script prepared (the first attempt + R).
    """
    attempts = [
        state.make_job(name, quanta)
        for stage in state.plan.stages
        for name in state.plan.in_stage(stage)
        if (quanta := state.runnable(name))
    ]
    for attempt in attempts:
        command = [*attempt.job.command, "--dag-retry", "$(rc2_retry)"]
        attempt.job = dataclasses.replace(attempt.job, command=command)
    if not attempts:
        raise ExecutionError(
            f"every quantum of RUN {state.run!r} already has its outputs registered; "
            "nothing to submit"
        )
    return attempts


def _final_job(state: RunState, prefix: list[str]) -> ClusterJob:
    directory = state.journal.directory / "dag" / "final"
    directory.mkdir(parents=True, exist_ok=True)
    return ClusterJob(
        name=FINAL_NODE,
        command=[*prefix, "aggregate", str(state.repo), state.run, "--finish"],
        request_memory_mb=2048,
        request_cpus=1,
        labels={"run": state.run, "stage": "final"},
        working_dir=directory,
        log_dir=directory,
    )


def register_results(repo: str | Path, run: str) -> RunSummary:
    """Finish a DAGMan run (its FINAL node): settle every node, register, journal the end.

    Every node attempt of this execution (since the latest ``run_started``; quanta an
    earlier one finished are skipped), in the order they were submitted, gives its
    quanta their states:
    the attempts the nodes' POST scripts settled (``job_finished``; DAGMan's ``RETRY``
    already reran what was worth it), a later attempt overriding an earlier one. An
    attempt nobody settled (its POST script did not run) is settled here from the
    records its job wrote, with no retry: one that recorded nothing failed if its job
    ran (its event log says it ended), and is left PENDING if DAGMan never ran it. Then
    the blocking rule marks the quanta behind failures; quanta still PENDING never ran.
    ``run_finished`` ends it, and the registration step
    (:func:`~.aggregate.aggregate_run`) registers the outputs of every succeeded quantum
    (already registered ones are skipped, so running it again is harmless) and writes the
    RUN's provenance dataset.

    Raises
    ------
    RunNotFoundError
        If ``run`` has no journal in ``repo``.
    ExecutionError
        If the journal has no ``run_started`` event.
    """
    journal, state = load_dag_state(repo, run)
    for ev in journal.events("quanta_skipped"):
        state.absorb({i: QuantumState.SUCCEEDED for i, _task in ev["quanta"]})
    events = list(journal.events())  # this execution's: since the latest run_started
    start = max((i for i, ev in enumerate(events) if ev["event"] == "run_started"), default=0)
    events = events[start:]
    finished = {(ev["cluster"], ev["attempt"]) for ev in events if ev["event"] == "job_finished"}
    runs: dict[str, int] = {}  # the node's run (DAGMan's $RETRY) each attempt is
    for ev in (ev for ev in events if ev["event"] == "job_submitted"):
        attempt = state.restore_attempt(ev)
        node_run = runs[attempt.cluster] = runs.get(attempt.cluster, -1) + 1
        if (attempt.cluster, attempt.attempt) in finished:  # by its POST script / a FINAL
            outcomes, _died = state.read_outcomes(attempt, _node_status(attempt, node_run))
            state.forget(attempt)
            state.absorb({o.index: o.status for o in outcomes})
            continue
        status = _node_status(attempt, node_run)
        if status is None and not attempt.result_path.exists():
            state.forget(attempt)  # DAGMan never ran the node: its quanta stay PENDING
            continue
        state.settle(attempt, status or JobStatus(JobState.SUCCEEDED, 0), retries=False)
    state.block_pending()
    run_status = state.final_status()
    counts = state.finish(run_status)
    aggregate_run(repo, run)  # every recorded output, and the provenance dataset
    release_lock(journal.directory, dag_owner(journal.directory))
    return RunSummary(run, run_status.value, counts, journal.path)


def _node_status(attempt: JobAttempt, run: int) -> JobStatus | None:
    """The final status of the node job that ran ``attempt`` (the node's run ``run``, 0
    the first) from the node's event log; None if it never ran or has not ended.

    Every run of a node is a new job logged to the log its submit file names (in the
    first attempt's folder): run R's job is the log's (R+1)-th.
    """
    jobs = node_jobs(attempt)
    if not jobs:  # not written by `rc2 submit --dagman` (no submit file): its own log
        from rc2_platform.execution.backends.htcondor import read_event_log

        log = attempt.directory / f"{attempt.cluster}.log"
        statuses = read_event_log(log) if log.exists() else {}
        order = sorted(statuses, key=lambda k: tuple(int(p) for p in k.split(".")))
        jobs = [(job_id, statuses[job_id], None) for job_id in order]
    if run >= len(jobs):
        return None
    status = jobs[run][1]
    return status if status.state.is_terminal else None
