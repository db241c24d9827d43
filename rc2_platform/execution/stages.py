"""Stage-by-stage execution of a graph, one cluster job per call (what Dagster fans out).

A driver of the run-state machine (:class:`~rc2_platform.execution.run_state.RunState`)
for an orchestrator that fans jobs out itself (the Dagster execution job: one step per
cluster, possibly each in its own process). The work is cut in calls that pass plain,
picklable data:

1. :func:`prepare_run` — once per graph: :meth:`RunState.prepare` (refuse bad input,
   register the RUN and dataset types, init-outputs, input records, ``run_started``;
   with ``resume`` the quanta already done). Returns a :class:`Ledger`.
2. :func:`plan_stage` — per stage: :meth:`RunState.runnable` of each cluster of the stage
   (the blocking rule); a :class:`ClusterSpec` per cluster with work left.
3. :func:`run_cluster_job` — per cluster: :meth:`RunState.make_job`, submit on a backend
   or through a *launcher* (a Dagster Pipes client), :meth:`RunState.settle` (retries,
   memory escalation) until no retry is left, and the registration step
   (:func:`~.aggregate.aggregate_run` of the cluster). Returns a :class:`ClusterOutcome`.
4. :func:`record_outcomes` folds outcomes into the ledger; :func:`finish_run` journals
   ``run_finished`` and writes the RUN's provenance (so ``rc2 report RUN`` works).

Nothing here imports Dagster.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rc2_platform.butler import Butler
from rc2_platform.errors import ExecutionError
from rc2_platform.execution.aggregate import aggregate_run
from rc2_platform.execution.backends import Backend, ClusterJob, JobHandle, JobStatus
from rc2_platform.execution.backends import make_backend as _make_backend
from rc2_platform.execution.execution_config import ExecutionConfig
from rc2_platform.execution.registration import registered_output_ids
from rc2_platform.execution.run_lock import release_lock
from rc2_platform.execution.run_state import (
    JobAttempt,
    QuantumState,
    RunState,
    RunStatus,
    WorkerSettings,
    load_graph_and_plan,
)
from rc2_platform.execution.runner import RunOptions, worker_command

__all__ = [
    "ClusterOutcome",
    "ClusterSpec",
    "Launcher",
    "Ledger",
    "check_stages",
    "done_in_registry",
    "finish_run",
    "load_run_state",
    "plan_stage",
    "prepare_run",
    "record_outcomes",
    "run_cluster_job",
]

#: Submits one cluster job, waits for its end, returns its handle and final status.
#: ``on_submitted`` must be called with the handle as soon as the job is queued.
Launcher = Callable[[ClusterJob, Callable[[JobHandle], None]], tuple[JobHandle, JobStatus]]


@dataclass
class Ledger:
    """What is known about one graph's execution between stages (plain, picklable data).

    Attributes
    ----------
    tract : str
        The tract (Dagster partition) the graph covers.
    repo : str
        Repository root.
    graph_path : str
        The ``.qgraph`` file.
    output_run : str
        Its RUN collection.
    n_quanta : int
        Quanta in the graph.
    backend : str
        Backend name the jobs go to.
    owner : str
        The RUN-lock token of this execution (released by :func:`finish_run`).
    states : dict[int, QuantumState]
        Quantum index -> final state (SUCCEEDED, FAILED, BLOCKED) once known.
    errors : dict[str, int]
        Failure message -> number of quanta (for the run's metadata).
    clusters_run : int
        Cluster jobs executed so far.
    """

    tract: str
    repo: str
    graph_path: str
    output_run: str
    n_quanta: int
    backend: str = "local"
    owner: str = ""
    states: dict[int, QuantumState] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    clusters_run: int = 0

    def counts(self) -> dict[str, int]:
        """Quanta per state (PENDING for those without a final state)."""
        out = {s.value: 0 for s in QuantumState}
        for state in self.states.values():
            out[state.value] += 1
        out[QuantumState.PENDING.value] = self.n_quanta - len(self.states)
        return out


@dataclass(frozen=True)
class ClusterSpec:
    """One cluster job to run: everything :func:`run_cluster_job` needs, as plain data."""

    tract: str
    graph_path: str
    cluster: str
    stage: str
    #: The quanta to run (those not done and not blocked when the stage was planned).
    quanta: tuple[int, ...]
    #: Final states of quanta that matter to this cluster (its own done ones, and the
    #: failed/blocked quanta it reads from).
    known: dict[int, QuantumState] = field(default_factory=dict)


@dataclass
class ClusterOutcome:
    """The end of one cluster job (all its attempts)."""

    tract: str
    cluster: str
    stage: str
    states: dict[int, QuantumState]
    registered: int
    attempts: int
    seconds: float
    errors: dict[str, int] = field(default_factory=dict)
    #: The final failures: ``task``, ``data_id``, ``error`` (full message),
    #: ``error_type`` and ``attempt`` of each quantum that failed for good.
    failures: list[dict[str, Any]] = field(default_factory=list)
    #: Quanta of the spec found done (outputs registered) and not run again.
    skipped: int = 0

    @property
    def failed(self) -> bool:
        """Whether a quantum of the cluster failed for good (after its retries)."""
        return any(s is QuantumState.FAILED for s in self.states.values())

    def counts(self) -> dict[str, int]:
        """Quanta of the cluster per final state."""
        out: dict[str, int] = {}
        for state in self.states.values():
            out[state.value] = out.get(state.value, 0) + 1
        return out


def check_stages(graph_path: str, config: ExecutionConfig, stages: Sequence[str]) -> None:
    """Check that every cluster of the graph falls in one of ``stages``, in order.

    Raises
    ------
    ExecutionError
        If the graph has a stage (a task no clustering rule covers) that ``stages``
        lacks, or a cluster reads from a cluster of the same or a later stage.
    """
    _graph, plan = load_graph_and_plan(graph_path, config)
    rank = {s: i for i, s in enumerate(stages)}
    unknown = [s for s in plan.stages if s not in rank]
    if unknown:
        raise ExecutionError(
            f"graph {graph_path} has stage(s) {unknown} that the execution job's stages "
            f"{list(stages)} lack: add those tasks to a clustering rule of the execution "
            "config (rc2_platform/config/execution.yaml), or run the graph with `rc2 run`"
        )
    for name, parents in plan.parents.items():
        for parent in parents:
            if rank[plan.stage[parent]] >= rank[plan.stage[name]]:
                raise ExecutionError(
                    f"graph {graph_path}: cluster {name!r} (stage {plan.stage[name]!r}) reads "
                    f"from {parent!r} (stage {plan.stage[parent]!r}), which does not run "
                    "before it; a stage's clusters must only read earlier stages — change "
                    "group_by of the clustering rules"
                )


def load_run_state(
    repo: str | Path, graph_path: str, config: ExecutionConfig, backend: str, options: RunOptions
) -> RunState:
    """A fresh :class:`RunState` over a graph file for ``backend`` (graph cached per process)."""
    worker = WorkerSettings(
        worker_command(options.executable), options.processes or config.processes_per_job, backend
    )
    return RunState.load(graph_path, repo, config, worker)


def prepare_run(
    repo: str | Path,
    tract: str,
    graph_path: str,
    config: ExecutionConfig,
    *,
    backend_name: str = "local",
    options: RunOptions | None = None,
    owner: str | None = None,
    command: str | None = None,
) -> Ledger:
    """Prepare the graph's RUN (:meth:`RunState.prepare`) and return its ledger.

    With ``options.resume`` the quanta whose outputs are all registered are SUCCEEDED in
    the returned ledger (they get no job). The RUN's lock is recorded for ``owner`` (the
    orchestrating workflow, e.g. ``dagster:<run id>``) until :func:`finish_run`.
    """
    options = options or RunOptions()
    state = load_run_state(repo, graph_path, config, backend_name, options)
    owner = owner or f"stages:{uuid.uuid4().hex[:12]}"
    with Butler(repo) as butler:
        state.prepare(
            butler, resume=options.resume, extend_run=options.extend_run,
            takeover=options.takeover, owner=owner, command=command,
        )  # fmt: skip
    return Ledger(
        tract,
        str(Path(repo).resolve()),
        str(state.graph_path),
        state.run,
        len(state.graph),
        backend_name,
        owner,
        state.final_states(),
    )


def done_in_registry(state: RunState, clusters: Iterable[str]) -> dict[int, QuantumState]:
    """Quanta of ``clusters`` not final in ``state`` whose outputs are all registered
    (one registry query), as SUCCEEDED."""
    todo = [
        i for name in clusters for i in state.plan.clusters[name] if not state.state(i).is_final
    ]
    if not todo:
        return {}
    quanta = [state.graph.quanta[i] for i in todo]
    with Butler(state.repo) as butler:
        existing = registered_output_ids(butler, (r for q in quanta for r in q.all_outputs()))
    return {
        q.index: QuantumState.SUCCEEDED
        for q in quanta
        if all(r.id in existing for r in q.all_outputs())
    }


def plan_stage(ledger: Ledger, stage: str, config: ExecutionConfig) -> list[ClusterSpec]:
    """Clusters of ``stage`` that still have work, with the states they depend on.

    Quanta behind a failed or blocked quantum become BLOCKED in the ledger here (the
    run-state machine's blocking rule); a cluster left with nothing to run gets no spec.
    Quanta of the stage whose outputs are all registered in the RUN (an earlier run or a
    re-execution's parent did them) become SUCCEEDED first: one registry query per stage.
    """
    state = load_run_state(ledger.repo, ledger.graph_path, config, ledger.backend, RunOptions())
    state.absorb(ledger.states)
    ledger.states.update(done_in_registry(state, state.plan.in_stage(stage)))
    state.absorb(ledger.states)
    specs = []
    for name in state.plan.in_stage(stage):
        quanta = state.runnable(name)
        members = state.plan.clusters[name]
        ledger.states.update(state.final_states(members))
        if not quanta:
            continue
        wanted = set(members) | {u for i in quanta for u in state.graph.upstream[i]}
        known = state.final_states(i for i in wanted if i in ledger.states)
        specs.append(
            ClusterSpec(ledger.tract, ledger.graph_path, name, stage, tuple(quanta), known)
        )
    return specs


class _LauncherBackend(Backend):
    """A :class:`Backend` whose ``submit`` runs each job to its end through a launcher."""

    name = "pipes"

    def __init__(self, launcher: Launcher) -> None:
        self.launcher = launcher
        self.final: dict[str, JobStatus] = {}

    def submit(self, jobs: Sequence[ClusterJob]) -> list[JobHandle]:
        handles = []
        for job in jobs:
            handle, status = self.launcher(job, lambda _h: None)
            self.final[handle.id] = status
            handles.append(handle)
        return handles

    def status(self, handles: Sequence[JobHandle]) -> dict[str, JobStatus]:
        return {h.id: self.final[h.id] for h in handles}

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        return None


def _wait(backend: Backend, handle: JobHandle, poll_seconds: float) -> JobStatus:
    while True:
        status = backend.status([handle])[handle.id]
        if status.state.is_terminal:
            return status
        time.sleep(poll_seconds)


def run_cluster_job(
    repo: str | Path,
    spec: ClusterSpec,
    config: ExecutionConfig,
    *,
    backend: Backend | None = None,
    launcher: Launcher | None = None,
    options: RunOptions | None = None,
    backend_name: str | None = None,
) -> ClusterOutcome:
    """Run one cluster (retrying failed quanta per the retry policy) and register it.

    Parameters
    ----------
    repo : str or Path
        Repository root.
    spec : ClusterSpec
        From :func:`plan_stage`.
    config : ExecutionConfig
        Resources, retries and backend settings.
    backend : Backend, optional
        Where the job runs (non-blocking submit + polling); ``options.backend`` or the
        config's default when neither this nor ``launcher`` is given.
    launcher : Launcher, optional
        Runs each attempt to its end (a Dagster Pipes client); wins over ``backend``.
    options : RunOptions, optional
        Worker command, processes per job, poll interval.
    backend_name : str, optional
        Name of the backend the launcher submits to (``htcondor``, ``kubernetes``): batch
        backends get the job's own retries; ``local`` by default.

    Returns
    -------
    ClusterOutcome
        Final state of each of the cluster's quanta; the succeeded ones' outputs are
        registered. Quanta of ``spec`` whose outputs are already registered (a
        re-execution of a step that partly succeeded) are not run again.
    """
    options = options or RunOptions()
    start = time.time()
    if launcher is not None:
        backend = _LauncherBackend(launcher)
    elif backend is None:
        backend = _make_backend(config, options.backend)
    name = backend_name or backend.name
    state = load_run_state(repo, spec.graph_path, config, name, options)
    state.absorb(spec.known)
    done = done_in_registry(state, [spec.cluster])
    state.absorb(done)
    quanta = [i for i in spec.quanta if i not in done]
    attempt: JobAttempt | None = state.make_job(spec.cluster, quanta) if quanta else None
    errors: dict[str, int] = {}
    failures: list[dict[str, Any]] = []
    registered = attempts = 0
    with Butler(repo) as butler:
        while attempt is not None:
            (handle,) = backend.submit([attempt.job])
            state.submitted(attempt, handle)
            attempts += 1
            settlement = state.settle(attempt, _wait(backend, handle, options.poll_seconds))
            registered += aggregate_run(
                repo, state.run, clusters={spec.cluster}, provenance=False, butler=butler
            ).registered
            for text, n in settlement.errors().items():
                errors[text] = errors.get(text, 0) + n
            failures += settlement.final_failures()
            attempt = settlement.retry
    members = state.plan.clusters[spec.cluster]
    states = {i: state.states.get(i, QuantumState.BLOCKED) for i in members}
    return ClusterOutcome(
        spec.tract,
        spec.cluster,
        spec.stage,
        states,
        registered,
        attempts,
        round(time.time() - start, 3),
        errors,
        failures,
        len(done),
    )


def record_outcomes(ledger: Ledger, outcomes: Iterable[ClusterOutcome]) -> Ledger:
    """Fold the outcomes of one graph's clusters into its ledger (returned, updated)."""
    for outcome in outcomes:
        if outcome.tract != ledger.tract:
            continue
        ledger.states.update(outcome.states)
        ledger.clusters_run += 1
        for text, n in outcome.errors.items():
            ledger.errors[text] = ledger.errors.get(text, 0) + n
    return ledger


def finish_run(repo: str | Path, ledger: Ledger, config: ExecutionConfig) -> dict[str, int]:
    """Journal ``run_finished``, register what is left and write the RUN's provenance.

    Returns the RUN's quantum counts.
    """
    state = load_run_state(repo, ledger.graph_path, config, ledger.backend, RunOptions())
    state.absorb(ledger.states)
    status: RunStatus = state.final_status()
    counts = state.finish(status)
    aggregate_run(repo, state.run)
    release_lock(state.journal.directory, ledger.owner)
    return counts
