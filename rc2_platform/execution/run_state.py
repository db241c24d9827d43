"""The run-state machine: what every driver of a graph's execution asks and tells.

One :class:`RunState` holds what is known of one graph's execution into its RUN: the
state of each quantum (:class:`QuantumState`), the attempts of each cluster, the memory
each cluster gets next, and the RUN's journal. Its public operations are all a driver
needs; the drivers only decide *where* and *when* jobs run:

- the local loop (:mod:`~rc2_platform.execution.runner`, ``rc2 run``): submits clusters
  as soon as their parents are done and polls the backend;
- the DAGMan submission (:mod:`~rc2_platform.execution.dagman_submit`): makes every job
  up front and lets DAGMan run them; its FINAL node settles the records;
- the Dagster stages (:mod:`~rc2_platform.execution.stages`): one op per stage plans,
  one step per cluster runs and settles.

Operations, in the order a driver calls them::

    state = RunState.load(graph_path, repo, config, worker)
    state.prepare(butler, resume=...)        # refuse bad input, register RUN, init-outputs
    for name in state.ready_clusters():      # (or every cluster of a stage / of the plan)
        quanta = state.runnable(name)        # the blocking rule; [] = nothing left to run
        attempt = state.make_job(name, quanta)   # job graph + worker command
        ...submit attempt.job...; state.submitted(attempt, handle)
    settlement = state.settle(attempt, status)   # states, retries, memory escalation
    state.counts(); state.finish(state.final_status())
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rc2_platform.butler import Butler
from rc2_platform.core.dataset_types import DatasetRef
from rc2_platform.errors import ClusterJobError
from rc2_platform.execution.attempts import (
    JOB_DIED,
    MEMORY_KILL_CODES,
    JobAttempt,
    RunStatus,
    Settlement,
    WorkerSettings,
    job_finished_fields,
)
from rc2_platform.execution.backends import ClusterJob, JobHandle, JobStatus
from rc2_platform.execution.execution_config import ExecutionConfig
from rc2_platform.execution.executor import QuantumOutcome
from rc2_platform.execution.job import (
    load_input_records,
    write_input_records,
    write_job_graph,
)
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.quantum_state import QuantumState, blocking_upstream
from rc2_platform.execution.records import RECORDS_FILE, JobResult
from rc2_platform.execution.registration import output_refs_by_id
from rc2_platform.execution.run_lock import LockHolder, RunLock
from rc2_platform.execution.run_prepare import (
    check_fresh,
    check_inputs,
    registered_quanta,
    write_init_outputs,
)
from rc2_platform.graph.clustering import ClusterPlan, plan_clusters
from rc2_platform.graph.io import load_graph
from rc2_platform.graph.model import QuantumGraph

__all__ = [
    "JobAttempt",
    "QuantumState",
    "RunState",
    "RunStatus",
    "Settlement",
    "WorkerSettings",
    "load_graph_and_plan",
]

#: (graph path, mtime, clustering rules) -> (graph, plan); input records file -> records.
_GRAPHS: dict[tuple[str, float, str], tuple[QuantumGraph, ClusterPlan]] = {}
_RECORDS: dict[tuple[str, float], dict[Any, Any]] = {}


def load_graph_and_plan(
    path: str | Path, config: ExecutionConfig
) -> tuple[QuantumGraph, ClusterPlan]:
    """The graph and its cluster plan, loaded once per process (keyed by file and rules)."""
    rules = json.dumps({k: v.model_dump() for k, v in config.clustering.items()}, sort_keys=True)
    resolved = Path(path).resolve()
    key = (str(resolved), resolved.stat().st_mtime, rules)
    if key not in _GRAPHS:
        graph = load_graph(resolved)
        if len(_GRAPHS) >= 4:
            _GRAPHS.pop(next(iter(_GRAPHS)))
        _GRAPHS[key] = (graph, plan_clusters(graph, config.clustering))
    return _GRAPHS[key]


class RunState:
    """What is known of one graph's execution into its RUN (see the module docstring).

    Parameters
    ----------
    graph_path : Path
        The ``.qgraph`` file (recorded in the journal).
    graph : QuantumGraph
        The graph.
    plan : ClusterPlan
        Its clusters.
    repo : Path
        Repository root.
    config : ExecutionConfig
        Resources, retry policy.
    worker : WorkerSettings
        How jobs run the worker.
    """

    def __init__(
        self,
        graph_path: Path,
        graph: QuantumGraph,
        plan: ClusterPlan,
        repo: Path,
        config: ExecutionConfig,
        worker: WorkerSettings,
    ) -> None:
        self.graph_path = graph_path
        self.graph = graph
        self.plan = plan
        self.repo = repo
        self.config = config
        self.worker = worker
        self.journal = Journal.for_run(repo, graph.output_run)
        self.states: dict[int, QuantumState] = {}
        self.active: dict[str, JobAttempt] = {}
        self.finished: set[str] = set()
        self._failures: dict[int, int] = {}
        self._memory: dict[str, int] = {}
        self._attempts: dict[str, int] = {}
        self.lock: RunLock | None = None

    @classmethod
    def load(
        cls,
        graph_path: str | Path,
        repo: str | Path,
        config: ExecutionConfig,
        worker: WorkerSettings,
    ) -> RunState:
        """A fresh state over a graph file (the graph and plan are cached per process)."""
        graph, plan = load_graph_and_plan(graph_path, config)
        return cls(Path(graph_path).resolve(), graph, plan, Path(repo).resolve(), config, worker)

    @functools.cached_property
    def output_refs(self) -> dict[uuid.UUID, DatasetRef]:
        """Every output ref of the graph's quanta, by dataset id."""
        return output_refs_by_id(self.graph)

    @property
    def run(self) -> str:
        """The graph's output RUN."""
        return self.graph.output_run

    # --- preparation ------------------------------------------------------------------

    def prepare(
        self,
        butler: Butler,
        *,
        resume: bool = False,
        extend_run: bool = False,
        takeover: bool = False,
        owner: str | None = None,
        command: str | None = None,
    ) -> None:
        """Check the repository, take the RUN's lock, register the RUN, journal the start.

        Nothing is written when the repository lacks an input of the graph, when the RUN
        already holds outputs and neither ``resume`` nor ``extend_run`` is given, or when
        another orchestrator holds the RUN. With ``resume`` (or ``extend_run``), outputs
        earlier jobs recorded are registered first and quanta whose outputs are all
        registered become SUCCEEDED.

        Parameters
        ----------
        butler : Butler
            The repository.
        resume, extend_run : bool
            Continue this graph's RUN / add this graph's outputs to an existing RUN (both
            skip quanta whose outputs exist).
        takeover : bool
            Take the RUN's lock from a holder not known to be dead (``--takeover``).
        owner : str, optional
            A workflow's lock token (DAGMan, Dagster); None: this process holds the lock
            until :meth:`finish` / :meth:`release`.
        command : str, optional
            What to record as the lock holder's command (default: this process's argv).

        Raises
        ------
        MissingInputsError
            If some overall input of the graph has no file record in the repository.
        RunConflictError
            If the RUN already holds outputs of this graph and neither flag is given.
        RunLockedError
            If another orchestrator holds the RUN.
        """
        records = check_inputs(self.graph, self.graph_path, butler)
        if not (resume or extend_run):
            check_fresh(self.graph, butler, earlier=self.journal.last("run_started") is not None)
        self.lock, taken = RunLock.acquire(
            self.journal.directory, self.run, command=command or " ".join(sys.argv),
            owner=owner, takeover=takeover, process=owner is None,
        )  # fmt: skip
        try:
            self._start(butler, records, resume or extend_run, taken)
        except BaseException:
            self.release()
            raise

    def _start(
        self, butler: Butler, records: dict[Any, Any], resume: bool, taken: LockHolder | None
    ) -> None:
        registry, graph = butler.registry, self.graph
        if taken is not None:
            self.journal.append("lock_taken_over", previous=asdict(taken))
        registry.register_run(graph.output_run)
        produced = {r.dataset_type for q in graph.quanta for r in q.all_outputs()}
        produced |= {r.dataset_type for refs in graph.init_outputs.values() for r in refs}
        for dt in sorted(produced, key=lambda d: d.name):
            registry.register_dataset_type(dt)
        self.journal.append(
            "run_started",
            run=graph.output_run,
            graph=str(self.graph_path),
            repo=str(self.repo),
            backend=self.worker.backend,
            processes=self.worker.processes,
            resume=resume,
            host=socket.gethostname(),
            pid=os.getpid(),
            owner=self.lock.holder.owner if self.lock else None,
            n_quanta=len(graph),
            tasks=graph.counts_by_task(),
            clusters=len(self.plan.clusters),
        )
        write_init_outputs(self.graph, butler)
        write_input_records(self.journal.input_records_path, records.values())
        if resume:
            from rc2_platform.execution.aggregate import aggregate_run

            # Outputs earlier jobs recorded but nobody registered (the orchestrator died).
            aggregate_run(self.repo, self.run, provenance=False, butler=butler)
            self._skip_existing(butler)

    def heartbeat(self) -> None:
        """Refresh the RUN lock's heartbeat (cheap; the local loop calls it every poll)."""
        if self.lock is not None:
            self.lock.heartbeat()

    def release(self) -> None:
        """Release the RUN's lock (this process's, or the workflow's token)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _skip_existing(self, butler: Butler) -> None:
        skipped = registered_quanta(self.graph, butler)
        for i in skipped:
            self.states[i] = QuantumState.SUCCEEDED
        self.journal.append(
            "quanta_skipped", quanta=[[i, self.graph.quanta[i].task_label] for i in skipped]
        )

    # --- states ---------------------------------------------------------------------

    def state(self, index: int) -> QuantumState:
        """The state of one quantum."""
        return self.states.get(index, QuantumState.PENDING)

    def absorb(self, states: Mapping[int, str | QuantumState]) -> None:
        """Take final states known elsewhere (another process's settlements)."""
        for i, s in states.items():
            self.states[int(i)] = QuantumState(s)

    def final_states(self, indexes: Iterable[int] | None = None) -> dict[int, QuantumState]:
        """Final states (SUCCEEDED, FAILED, BLOCKED) of ``indexes`` (all if None)."""
        keys = self.states if indexes is None else indexes
        return {i: self.states[i] for i in keys if i in self.states and self.states[i].is_final}

    def counts(self) -> dict[str, int]:
        """Number of quanta per state (every state listed, zeros included)."""
        out = {s.value: 0 for s in QuantumState}
        for s in self.states.values():
            out[s.value] += 1
        out[QuantumState.PENDING.value] += len(self.graph) - len(self.states)
        return out

    def final_status(self) -> RunStatus:
        """SUCCEEDED when every quantum succeeded, else FAILED."""
        done = sum(1 for s in self.states.values() if s is QuantumState.SUCCEEDED)
        return RunStatus.SUCCEEDED if done == len(self.graph) else RunStatus.FAILED

    # --- scheduling -----------------------------------------------------------------

    def ready_clusters(self) -> list[str]:
        """Clusters whose parent clusters are all finished, not running, not finished.

        A ready cluster whose quanta are all final already (a resumed RUN whose earlier
        jobs ended) is finished here, so that its children are ready in the same call:
        otherwise a driver would see nothing to submit and nothing running, and end the
        RUN with those children pending.
        """
        while True:
            ready = [
                name
                for stage in self.plan.stages
                for name in self.plan.in_stage(stage)
                if name not in self.finished
                and name not in self.active
                and self.plan.parents[name] <= self.finished
            ]
            done = [
                name
                for name in ready
                if all(self.state(i).is_final for i in self.plan.clusters[name])
            ]
            if not done:
                return ready
            self.finished.update(done)

    def runnable(self, cluster: str) -> list[int]:
        """The cluster's quanta still to run; those behind a failure become BLOCKED.

        Applies :func:`~rc2_platform.execution.quantum_state.blocking_upstream` in the
        cluster's topological order. A cluster left with nothing to run is finished.
        """
        todo: list[int] = []
        blocked: list[list[Any]] = []
        for i in self.plan.clusters[cluster]:
            if self.state(i).is_final:
                continue
            cause = blocking_upstream(self.graph.upstream[i], self.states.get)
            if cause is None:
                todo.append(i)
                continue
            self.states[i] = QuantumState.BLOCKED
            blocked.append([i, self.graph.quanta[i].task_label, self._data_id(i), cause])
        if blocked:
            self.journal.append("quanta_blocked", quanta=blocked)
        if not todo:
            self.finished.add(cluster)
        return todo

    def make_job(
        self, cluster: str, quanta: Sequence[int], *, number: int | None = None
    ) -> JobAttempt:
        """The next attempt of ``cluster`` running ``quanta``: job graph and worker command.

        The quanta become RUNNING. Attempt numbers continue after the attempt folders
        already in the RUN's job folder (a resumed RUN never reuses one), unless
        ``number`` is given: a DAG node's next attempt is the one its next run looks for,
        and a POST script killed after writing its folder writes it again.
        """
        if number is None:
            number = self._next_attempt(cluster)
        self._attempts[cluster] = max(self._attempts.get(cluster, 0), number)
        labels = sorted({self.graph.quanta[i].task_label for i in quanta})
        base_memory, cpus = self.config.job_resources(labels)
        memory = self._memory.setdefault(cluster, base_memory)
        directory = self.journal.job_dir(cluster, number)
        job_graph = directory / "job.qgraph"
        write_job_graph(job_graph, self.graph, quanta, self._input_records(), cluster)
        command = [
            *self.worker.command,
            "run-cluster", str(job_graph),
            "--cluster", cluster,
            "--repo", str(self.repo),
            "--result", str(directory / RECORDS_FILE),
            "--processes", str(self.worker.processes),
            "--attempt", str(number),
        ]  # fmt: skip
        local = self.worker.backend == "local"
        job = ClusterJob(
            name=cluster,
            command=command,
            request_memory_mb=memory,
            request_cpus=cpus,
            env={"RC2_JOB_MEMORY_MB": str(memory)},
            labels={"run": self.run, "stage": self.plan.stage[cluster]},
            working_dir=directory,
            log_dir=directory,
            # Local: the run-state machine retries quanta itself. Batch systems: their
            # own memory-escalating retries of jobs killed for memory.
            max_retries=0 if local else self.config.job_max_retries(labels),
        )
        for i in quanta:
            self.states[i] = QuantumState.RUNNING
        return JobAttempt(cluster, number, list(quanta), memory, directory, job)

    def _next_attempt(self, cluster: str) -> int:
        folder = self.journal.directory / "jobs" / cluster
        seen = [self._attempts.get(cluster, 0)]
        if folder.is_dir():
            seen += [int(p.name[7:]) for p in folder.iterdir() if p.name[7:].isdigit()]
        number = max(seen) + 1
        self._attempts[cluster] = number
        return number

    def _input_records(self) -> dict[Any, Any]:
        path = self.journal.input_records_path
        key = (str(path), path.stat().st_mtime)
        if key not in _RECORDS:
            _RECORDS.clear()
            _RECORDS[key] = load_input_records(path)
        return _RECORDS[key]

    def submitted(self, attempt: JobAttempt, handle: JobHandle) -> None:
        """Record that ``attempt`` was submitted as ``handle`` (journal ``job_submitted``)."""
        attempt.handle = handle
        self.active[attempt.cluster] = attempt
        self.journal.append(
            "job_submitted",
            cluster=attempt.cluster,
            attempt=attempt.attempt,
            stage=self.plan.stage[attempt.cluster],
            handle=handle.to_dict(),
            memory_mb=attempt.memory_mb,
            directory=str(attempt.directory),
            quanta=[[i, self.graph.quanta[i].task_label, self._data_id(i)] for i in attempt.quanta],
        )

    # --- settling -------------------------------------------------------------------

    def read_outcomes(
        self, attempt: JobAttempt, status: JobStatus | None
    ) -> tuple[list[QuantumOutcome], bool]:
        """The attempt's outcomes from its records; quanta it did not record failed.

        Returns the outcomes (one per quantum of the attempt) and whether the job
        recorded nothing at all (it died).
        """
        recorded: dict[int, QuantumOutcome] = {}
        if attempt.result_path.exists():
            try:
                recorded = {o.index: o for o in JobResult.read(attempt.result_path).outcomes}
            except ClusterJobError:
                recorded = {}
        reason = "no status"
        if status is not None:
            reason = status.reason or f"exit code {status.exit_code}"
        outcomes = []
        for i in attempt.quanta:
            outcome = recorded.get(i)
            if outcome is None:
                outcome = QuantumOutcome(
                    i,
                    self.graph.quanta[i].task_label,
                    self._data_id(i),
                    QuantumState.FAILED,
                    error=f"job died before recording this quantum ({reason})",
                    error_type=JOB_DIED,
                )
            outcomes.append(outcome)
        return outcomes, not recorded

    def settle(
        self,
        attempt: JobAttempt,
        status: JobStatus,
        *,
        retries: bool = True,
        next_attempt: int | None = None,
        journaled: bool = False,
    ) -> Settlement:
        """Fold a finished attempt in: quantum states, retries and memory escalation.

        Failed quanta with retries left (per task, ``retry.tasks``), and the quanta the
        job blocked behind them, go into a new attempt of the cluster, with
        ``memory × retry.memory_multiplier`` (capped) when the job was killed for memory
        (SIGKILL) or a quantum raised ``MemoryError``, ``memory × multiplier ** starts``
        when the batch system stopped it for memory after ``starts`` starts it escalated
        itself (``status.escalated_in_queue``: HTCondor's in-queue escalation ran out). A job killed
        for memory whose attempt requested ``retry.max_memory_mb`` is not retried (journal
        ``memory_cap_reached``): the same memory again would be killed again. The new
        attempt is returned in the settlement for the driver to submit; otherwise the
        cluster is finished.
        ``next_attempt`` fixes the retry's attempt number (:meth:`make_job`);
        ``journaled``: the ``job_finished`` event of this attempt is in the journal
        already (a DAG POST script run again after dying half-way), do not append it again.
        """
        self.active.pop(attempt.cluster, None)
        outcomes, died = self.read_outcomes(attempt, status)
        unrecorded = [o.index for o in outcomes if o.error_type == JOB_DIED]
        result = None if died else attempt.result_path
        if not journaled:
            self.journal.append(
                "job_finished",
                **job_finished_fields(
                    attempt.cluster, attempt.attempt, status, result, unrecorded, attempt.directory
                ),
            )
        memory_killed = (
            status.memory_exceeded
            or status.exit_code in MEMORY_KILL_CODES
            or any(o.error_type == "MemoryError" for o in outcomes)
        )
        retry = self._retry_set(outcomes) if retries and status.retryable else set()
        cap = self.config.retry.max_memory_mb
        # The attempt's own request, not what a batch system may have escalated it to in
        # its queue: only Kubernetes' pod count would overstate that (non-memory restarts).
        if memory_killed and retry and attempt.memory_mb >= cap:
            # The same memory again would be killed again: a mature batch system stops here.
            self.journal.append("memory_cap_reached", cluster=attempt.cluster,
                                attempt=attempt.attempt, memory_mb=attempt.memory_mb,
                                max_memory_mb=cap)  # fmt: skip
            retry = set()
        for o in outcomes:
            if o.index not in retry:
                self.states[o.index] = o.status
        settlement = Settlement(attempt, outcomes, died)
        if not retry:
            self.finished.add(attempt.cluster)
            return settlement
        if memory_killed:
            # A job the batch system held for memory ran ``attempts`` times, its memory
            # escalated in the queue at each start: the retry asks for the next step.
            steps = max(status.attempts, 1) if status.escalated_in_queue else 1
            self._memory[attempt.cluster] = min(
                max(int(attempt.memory_mb * self.config.retry.memory_multiplier**steps), 1),
                max(self.config.retry.max_memory_mb, attempt.memory_mb),
            )
        quanta = [i for i in attempt.quanta if i in retry]
        settlement.retry = self.make_job(attempt.cluster, quanta, number=next_attempt)
        self.journal.append(
            "retry_scheduled",
            cluster=attempt.cluster,
            attempt=settlement.retry.attempt,
            quanta=quanta,
            memory_mb=settlement.retry.memory_mb,
            memory_escalated=memory_killed,
        )
        return settlement

    def _retry_set(self, outcomes: Sequence[QuantumOutcome]) -> set[int]:
        """Failed quanta with retries left, and the blocked quanta behind them."""
        retry: set[int] = set()
        for o in outcomes:
            if o.status is QuantumState.FAILED:
                failures = self._failures[o.index] = self._failures.get(o.index, 0) + 1
                if not self.config.retry.retries_error(o.error_type):
                    continue
                if failures <= self.config.retry.for_task(o.task_label):
                    retry.add(o.index)
        if retry:
            behind = self.graph.all_downstream(retry)
            retry |= {
                o.index for o in outcomes if o.status is QuantumState.BLOCKED and o.index in behind
            }
        return retry

    def note_failures(self, outcomes: Iterable[QuantumOutcome]) -> None:
        """Count failures another process settled (a DAG node's earlier attempts) against
        the quanta's retries, as :meth:`settle` counts its own."""
        for o in outcomes:
            if o.status is QuantumState.FAILED:
                self._failures[o.index] = self._failures.get(o.index, 0) + 1

    def restore_attempt(self, event: Mapping[str, Any]) -> JobAttempt:
        """The running attempt a ``job_submitted`` journal event describes (another process
        submitted it, e.g. ``rc2 submit --dagman``); it becomes active again."""
        cluster, number = str(event["cluster"]), int(event["attempt"])
        quanta = [int(q[0]) for q in event["quanta"]]
        directory = Path(event["directory"])
        job = ClusterJob(
            name=cluster,
            command=["rc2"],
            request_memory_mb=int(event.get("memory_mb") or 1),
            request_cpus=1,
            working_dir=directory,
            log_dir=directory,
        )
        attempt = JobAttempt(
            cluster, number, quanta, job.request_memory_mb, directory, job,
            JobHandle.from_dict(event["handle"]),
        )  # fmt: skip
        self._attempts[cluster] = max(self._attempts.get(cluster, 0), number)
        for i in quanta:
            if not self.state(i).is_final:
                self.states[i] = QuantumState.RUNNING
        self.active[cluster] = attempt
        return attempt

    def forget(self, attempt: JobAttempt) -> None:
        """Drop an attempt that never ran: its quanta are PENDING again."""
        self.active.pop(attempt.cluster, None)
        for i in attempt.quanta:
            if self.states.get(i) is QuantumState.RUNNING:
                del self.states[i]

    def block_pending(self) -> int:
        """Apply the blocking rule to every quantum not final yet (in topological order).

        For drivers that settle everything at the end (DAGMan's FINAL node): quanta
        behind a failure become BLOCKED (journaled); the others stay PENDING (never ran).
        Returns how many were blocked.
        """
        blocked: list[list[Any]] = []
        for i in self.graph.topological_order():
            if self.state(i).is_final or self.state(i) is QuantumState.RUNNING:
                continue
            cause = blocking_upstream(self.graph.upstream[i], self.states.get)
            if cause is not None:
                self.states[i] = QuantumState.BLOCKED
                blocked.append([i, self.graph.quanta[i].task_label, self._data_id(i), cause])
        if blocked:
            self.journal.append("quanta_blocked", quanta=blocked)
        return len(blocked)

    def cancel_active(self, reason: str = "cancelled") -> list[JobAttempt]:
        """Forget the running attempts (journal them as cancelled); their quanta are PENDING.

        The driver cancels the returned attempts' jobs on its backend.
        """
        attempts = list(self.active.values())
        for attempt in attempts:
            self.journal.append(
                "job_finished",
                cluster=attempt.cluster,
                attempt=attempt.attempt,
                status={"state": "REMOVED", "reason": reason},
                result=None,
                died=True,
                cancelled=True,
            )
            for i in attempt.quanta:
                if self.states.get(i) is QuantumState.RUNNING:
                    del self.states[i]
        self.active.clear()
        return attempts

    def finish(self, status: RunStatus, *, release: bool = True) -> dict[str, int]:
        """Journal ``run_finished`` with ``status`` and the counts; return the counts.

        The RUN's lock is released unless ``release`` is False (the caller still works
        under it, and releases it itself).
        """
        counts = self.counts()
        self.journal.append("run_finished", status=status.value, counts=counts)
        if release:
            self.release()
        return counts

    def _data_id(self, index: int) -> dict[str, Any]:
        return dict(self.graph.quanta[index].data_id.to_dict())
