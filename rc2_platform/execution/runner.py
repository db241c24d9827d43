"""The orchestrating side: plan clusters, submit them to a backend, register, retry, resume.

:func:`run_graph` (``rc2 run`` / ``rc2 submit`` / ``rc2 restart``):

1. registers the RUN and the graph's output dataset types, writes the init-outputs
   (``{label}_config``) once, and exports the overall inputs' datastore records for workers;
2. with ``resume``, skips every quantum whose outputs are all registered in the RUN (one
   set-based query per 5,000 refs);
3. plans clusters with the execution config's rules and submits each cluster as soon as
   the clusters it reads from have finished;
4. when a job finishes, reads its result file and registers the succeeded quanta's
   outputs in one transaction; failed quanta are retried (per-task retry counts) in a new
   attempt of the cluster, with more memory when the job was killed for memory; quanta
   downstream of a final failure are recorded as blocked;
5. writes every step to the run's journal, which ``rc2 report`` reads.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rc2_platform.butler import Butler
from rc2_platform.errors import ClusterJobError, ExecutionError
from rc2_platform.execution.backends import Backend, ClusterJob, JobHandle, JobStatus, make_backend
from rc2_platform.execution.execution_config import ExecutionConfig, load_execution_config
from rc2_platform.execution.executor import FAILED, SUCCEEDED, PreparedTask, QuantumOutcome
from rc2_platform.execution.job import (
    JobResult,
    load_input_records,
    write_input_records,
    write_job_graph,
)
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.registration import (
    output_refs_by_id,
    register_outcomes,
    registered_output_ids,
)
from rc2_platform.graph.clustering import ClusterPlan, plan_clusters
from rc2_platform.graph.io import load_graph
from rc2_platform.graph.model import QuantumGraph
from rc2_platform.pipeline import CONFIG_CONNECTION, ConnectionKind

__all__ = ["RunOptions", "RunSummary", "cancel_run", "restart_run", "run_graph", "worker_command"]

#: Exit statuses meaning "killed for memory" on a local machine (SIGKILL from the OOM killer).
_MEMORY_KILL_CODES = frozenset({-signal.SIGKILL, 128 + signal.SIGKILL})


@dataclass
class RunOptions:
    """How to run a graph.

    Attributes
    ----------
    backend : str or None
        ``local``, ``htcondor`` or ``kubernetes``; the config's default when None.
    processes : int or None
        Processes per cluster job (``run-cluster --processes``); config default if None.
    jobs : int or None
        Local backend: cluster jobs running at once; config default if None.
    resume : bool
        Skip quanta whose outputs are already registered in the RUN.
    poll_seconds : float
        Pause between backend status polls (local jobs: at most 10 ms, since a poll there
        costs microseconds and every pause delays the next job's start).
    executable : list of str or None
        Command prefix running the ``rc2`` CLI on workers; the ``rc2`` script next to
        this Python (local) or ``rc2`` on the PATH when None.
    """

    backend: str | None = None
    processes: int | None = None
    jobs: int | None = None
    resume: bool = False
    poll_seconds: float = 0.05
    executable: list[str] | None = None


@dataclass
class RunSummary:
    """Outcome of :func:`run_graph`: final status and quantum counts by state."""

    run: str
    status: str
    counts: dict[str, int] = field(default_factory=dict)
    journal: Path | None = None


def worker_command(executable: Sequence[str] | None = None) -> list[str]:
    """The command prefix that runs ``rc2`` on a worker."""
    if executable:
        return list(executable)
    local = Path(sys.executable).parent / "rc2"
    return [str(local)] if local.exists() else [shutil.which("rc2") or "rc2"]


@dataclass
class _Attempt:
    cluster: str
    attempt: int
    quanta: list[int]
    memory_mb: int
    directory: Path
    handle: JobHandle


class _Orchestrator:
    """State of one execution of a graph (see :func:`run_graph`)."""

    def __init__(
        self,
        graph_path: Path,
        butler: Butler,
        config: ExecutionConfig,
        options: RunOptions,
        backend: Backend,
    ) -> None:
        self.graph_path = graph_path
        self.butler = butler
        self.config = config
        self.options = options
        self.backend = backend
        self.graph: QuantumGraph = load_graph(graph_path)
        self.plan: ClusterPlan = plan_clusters(self.graph, config.clustering)
        self.journal = Journal.for_run(butler.root, self.graph.output_run)
        self.state: dict[int, str] = {}  # quantum index -> succeeded / failed / blocked
        self.starts: dict[int, int] = {}
        self.memory: dict[str, int] = {}
        self.finished: set[str] = set()
        self.active: dict[str, _Attempt] = {}
        self.attempts: dict[str, int] = {}
        self.refs_by_id = output_refs_by_id(self.graph)
        self.processes = options.processes or config.processes_per_job
        self.input_records: dict[Any, Any] | None = None
        self._pause = (
            min(options.poll_seconds, 0.01) if backend.name == "local" else options.poll_seconds
        )

    # --- preparation ----------------------------------------------------------------

    def prepare(self) -> None:
        registry, graph = self.butler.registry, self.graph
        registry.register_run(graph.output_run)
        produced = {r.dataset_type for r in self.refs_by_id.values()}
        produced |= {r.dataset_type for refs in graph.init_outputs.values() for r in refs}
        for dt in sorted(produced, key=lambda d: d.name):
            registry.register_dataset_type(dt)
        self.journal.append(
            "run_started",
            run=graph.output_run,
            graph=str(self.graph_path),
            repo=str(self.butler.root),
            backend=self.backend.name,
            processes=self.processes,
            resume=self.options.resume,
            pid=os.getpid(),
            n_quanta=len(graph),
            tasks=graph.counts_by_task(),
            clusters=len(self.plan.clusters),
        )
        self._write_init_outputs()
        overall = {
            r.id: r for q in graph.quanta for r in q.all_inputs() if r.id not in graph.producers
        }
        records = self.butler.datastore_records(overall.values())
        write_input_records(self.journal.input_records_path, records.values())
        self.input_records = {r.dataset_id: r for r in records.values()}
        if self.options.resume:
            self._skip_existing()

    def _write_init_outputs(self) -> None:
        refs = [r for rs in self.graph.init_outputs.values() for r in rs]
        if not refs:
            return
        existing = registered_output_ids(self.butler, refs)
        stored = []
        for label, label_refs in self.graph.init_outputs.items():
            todo = [r for r in label_refs if r.id not in existing]
            if not todo:
                continue
            summary = self.graph.task(label)
            prepared = PreparedTask(summary)
            names = {
                c.dataset_type_name: n
                for n, c in prepared.connections.items()
                if c.kind is ConnectionKind.INIT_OUTPUT
            }
            instance = prepared.make()
            for ref in todo:
                conn = names.get(ref.dataset_type.name)
                if ref.dataset_type.name == f"{label}_config" or conn == CONFIG_CONNECTION:
                    obj: Any = prepared.config.model_dump(mode="json")
                else:
                    obj = getattr(instance, conn or "", None)
                    if obj is None:
                        obj = {"note": f"task {label!r} provides no object for {conn!r}"}
                stored.append((ref, self.butler.datastore.put(obj, ref, overwrite=True)))
        self.butler.register_outputs(stored)

    def _skip_existing(self) -> None:
        existing = registered_output_ids(self.butler, self.refs_by_id.values())
        skipped = [
            q.index for q in self.graph.quanta if all(r.id in existing for r in q.all_outputs())
        ]
        for i in skipped:
            self.state[i] = SUCCEEDED
        self.journal.append(
            "quanta_skipped", quanta=[[i, self.graph.quanta[i].task_label] for i in skipped]
        )

    # --- the loop -------------------------------------------------------------------

    def loop(self) -> str:
        while True:
            if self.journal.cancel_requested():
                self._cancel_active()
                return "cancelled"
            self._submit_ready()
            if not self.active:
                return (
                    "succeeded"
                    if all(self.state.get(i) == SUCCEEDED for i in range(len(self.graph)))
                    else "failed"
                )
            handles = [a.handle for a in self.active.values()]
            statuses = self.backend.status(handles)
            for attempt in list(self.active.values()):
                status = statuses[attempt.handle.id]
                if status.state.is_terminal:
                    del self.active[attempt.cluster]
                    self._finish(attempt, status)
            if self.active:
                time.sleep(self._pause)

    def _submit_ready(self) -> None:
        jobs: list[tuple[ClusterJob, _Attempt]] = []
        for name in self._ready_clusters():
            todo = self._runnable(name)
            if not todo:
                self.finished.add(name)
                continue
            jobs.append(self._make_job(name, todo))
        if jobs:
            handles = self.backend.submit([j for j, _ in jobs])
            for (job, attempt), handle in zip(jobs, handles, strict=True):
                attempt.handle = handle
                self.active[attempt.cluster] = attempt
                self._journal_submit(job, attempt)

    def _ready_clusters(self) -> list[str]:
        return [
            name
            for stage in self.plan.stages
            for name in self.plan.in_stage(stage)
            if name not in self.finished
            and name not in self.active
            and self.plan.parents[name] <= self.finished
        ]

    def _runnable(self, name: str) -> list[int]:
        """Quanta of a cluster still to run; those behind a failure are marked blocked."""
        todo, blocked = [], []
        for i in self.plan.clusters[name]:
            if i in self.state:
                continue
            bad = [u for u in self.graph.upstream[i] if self.state.get(u) in (FAILED, "blocked")]
            if bad:
                self.state[i] = "blocked"
                blocked.append([i, self.graph.quanta[i].task_label, self._data_id(i), bad[0]])
            else:
                todo.append(i)
        if blocked:
            self.journal.append("quanta_blocked", quanta=blocked)
        return todo

    def _data_id(self, index: int) -> dict[str, Any]:
        return dict(self.graph.quanta[index].data_id.to_dict())

    def _make_job(self, name: str, quanta: list[int]) -> tuple[ClusterJob, _Attempt]:
        number = self.attempts.get(name, 0) + 1
        self.attempts[name] = number
        labels = sorted({self.graph.quanta[i].task_label for i in quanta})
        base_memory, cpus = self.config.job_resources(labels)
        memory = self.memory.setdefault(name, base_memory)
        directory = self.journal.job_dir(name, number)
        job_graph = directory / "job.qgraph"
        write_job_graph(job_graph, self.graph, quanta, self._input_records(), name)
        command = [
            *worker_command(self.options.executable),
            "run-cluster", str(job_graph),
            "--cluster", name,
            "--repo", str(self.butler.root),
            "--result", str(directory / "result.json"),
            "--processes", str(self.processes),
            "--attempt", str(number),
        ]  # fmt: skip
        job = ClusterJob(
            name=name,
            command=command,
            request_memory_mb=memory,
            request_cpus=cpus,
            env={"RC2_JOB_MEMORY_MB": str(memory)},
            labels={"run": self.graph.output_run, "stage": self.plan.stage[name]},
            working_dir=directory,
            log_dir=directory,
            # Local: the orchestrator retries quanta itself. Batch systems: their own
            # memory-escalating retries of jobs killed for memory.
            max_retries=0 if self.backend.name == "local" else self.config.job_max_retries(labels),
        )
        for i in quanta:
            self.starts[i] = self.starts.get(i, 0) + 1
        return job, _Attempt(name, number, quanta, memory, directory, JobHandle("", name, ""))

    def _input_records(self) -> dict[Any, Any]:
        """The overall inputs' records (exported by :meth:`prepare`, maybe in another process)."""
        records = getattr(self, "input_records", None)
        if records is None:
            records = self.input_records = load_input_records(self.journal.input_records_path)
        return records

    def _journal_submit(self, job: ClusterJob, attempt: _Attempt) -> None:
        self.journal.append(
            "job_submitted",
            cluster=attempt.cluster,
            attempt=attempt.attempt,
            stage=self.plan.stage[attempt.cluster],
            handle=attempt.handle.to_dict(),
            memory_mb=attempt.memory_mb,
            directory=str(attempt.directory),
            quanta=[[i, self.graph.quanta[i].task_label, self._data_id(i)] for i in attempt.quanta],
        )

    # --- finished jobs --------------------------------------------------------------

    def _finish(self, attempt: _Attempt, status: JobStatus) -> None:
        result_path = attempt.directory / "result.json"
        outcomes: list[QuantumOutcome]
        if result_path.exists():
            try:
                outcomes = JobResult.read(result_path).outcomes
            except ClusterJobError:
                outcomes = []
        else:
            outcomes = []
        died = not outcomes
        if died:
            reason = status.reason or f"exit code {status.exit_code}"
            outcomes = [
                QuantumOutcome(
                    i,
                    self.graph.quanta[i].task_label,
                    self._data_id(i),
                    FAILED,
                    error=f"job died before writing its result ({reason})",
                    error_type="JobDied",
                )
                for i in attempt.quanta
            ]
        registered = register_outcomes(self.butler, outcomes, self.refs_by_id)
        self.journal.append(
            "job_finished",
            cluster=attempt.cluster,
            attempt=attempt.attempt,
            status=status.to_dict(),
            result=None if died else str(result_path),
            died=died,
            registered=registered,
        )
        memory_killed = status.exit_code in _MEMORY_KILL_CODES or any(
            o.error_type == "MemoryError" for o in outcomes
        )
        self._settle(attempt, outcomes, memory_killed)

    def _settle(self, attempt: _Attempt, outcomes: list[QuantumOutcome], memory: bool) -> None:
        retry: list[int] = []
        for o in outcomes:
            if o.status == SUCCEEDED:
                self.state[o.index] = SUCCEEDED
            elif o.status == FAILED and self.starts[o.index] <= self.config.retry.for_task(
                o.task_label
            ):
                retry.append(o.index)
        if retry:
            retry_set = set(retry) | self._blocked_behind(outcomes, set(retry))
            quanta = [i for i in attempt.quanta if i in retry_set]
            if memory:
                self.memory[attempt.cluster] = min(
                    max(int(attempt.memory_mb * self.config.retry.memory_multiplier), 1),
                    max(self.config.retry.max_memory_mb, attempt.memory_mb),
                )
            job, new = self._make_job(attempt.cluster, quanta)
            self.journal.append(
                "retry_scheduled",
                cluster=attempt.cluster,
                attempt=new.attempt,
                quanta=quanta,
                memory_mb=new.memory_mb,
                memory_escalated=memory,
            )
            (new.handle,) = self.backend.submit([job])
            self.active[attempt.cluster] = new
            self._journal_submit(job, new)
            # Quanta not retried keep their final state.
            for o in outcomes:
                if o.index not in retry_set and o.status != SUCCEEDED:
                    self.state[o.index] = o.status
            return
        for o in outcomes:
            if o.status != SUCCEEDED:
                self.state[o.index] = o.status
        self.finished.add(attempt.cluster)

    def _blocked_behind(self, outcomes: list[QuantumOutcome], retried: set[int]) -> set[int]:
        behind = self.graph.all_downstream(retried)
        return {o.index for o in outcomes if o.status == "blocked" and o.index in behind}

    def _cancel_active(self) -> None:
        handles = [a.handle for a in self.active.values()]
        if handles:
            self.backend.cancel(handles)
        for attempt in self.active.values():
            self.journal.append(
                "job_finished",
                cluster=attempt.cluster,
                attempt=attempt.attempt,
                status={"state": "REMOVED", "reason": "cancelled"},
                result=None,
                died=True,
                cancelled=True,
                registered=0,
            )
        self.active.clear()

    def counts(self) -> dict[str, int]:
        out = {"succeeded": 0, "failed": 0, "blocked": 0, "pending": 0}
        for i in range(len(self.graph)):
            out[self.state.get(i, "pending")] += 1
        return out


def run_graph(
    graph_path: str | Path,
    repo: str | Path,
    *,
    config: ExecutionConfig | None = None,
    config_path: str | Path | None = None,
    options: RunOptions | None = None,
    backend: Backend | None = None,
) -> RunSummary:
    """Execute a QuantumGraph file against a repository and wait for the end.

    Parameters
    ----------
    graph_path : str or Path
        The ``.qgraph`` file.
    repo : str or Path
        Repository root.
    config : ExecutionConfig, optional
        Execution config; loaded from ``config_path`` (or the packaged default) if None.
    config_path : str or Path, optional
        Recorded in the journal so ``rc2 restart`` / ``rc2 cancel`` use the same config.
    options : RunOptions, optional
        Backend, processes, resume.
    backend : Backend, optional
        A ready backend (tests: HTCondor with a schedd double); built from the config if None.

    Returns
    -------
    RunSummary
        ``succeeded`` when every quantum succeeded, else ``failed`` / ``cancelled``.
    """
    options = options or RunOptions()
    config = config or load_execution_config(config_path)
    if backend is None:
        if options.jobs is not None:
            local = config.backends.local.model_copy(update={"max_workers": options.jobs})
            config = config.model_copy(
                update={"backends": config.backends.model_copy(update={"local": local})}
            )
        backend = make_backend(config, options.backend)
    with Butler(repo) as butler:
        orchestrator = _Orchestrator(Path(graph_path).resolve(), butler, config, options, backend)
        orchestrator.journal.append(
            "options",
            config_path=None if config_path is None else str(Path(config_path).resolve()),
            jobs=options.jobs,
            backend=backend.name,
        )
        orchestrator.prepare()
        try:
            status = orchestrator.loop()
        except BaseException:
            orchestrator._cancel_active()
            orchestrator.journal.append(
                "run_finished", status="aborted", counts=orchestrator.counts()
            )
            raise
        counts = orchestrator.counts()
        orchestrator.journal.append("run_finished", status=status, counts=counts)
        return RunSummary(orchestrator.graph.output_run, status, counts, orchestrator.journal.path)


def restart_run(
    repo: str | Path, run: str, *, backend: Backend | None = None, options: RunOptions | None = None
) -> RunSummary:
    """Resume ``run`` from its journal: same graph, config and backend, skipping done quanta."""
    journal = Journal.for_run(repo, run, must_exist=True)
    started = journal.last("run_started")
    opts_event = journal.last("options") or {}
    if started is None:
        raise ExecutionError(f"the journal of RUN {run!r} has no run_started event; use `rc2 run`")
    opts = options or RunOptions(
        backend=str(started["backend"]),
        processes=int(started["processes"]),
        jobs=opts_event.get("jobs"),
    )
    opts.resume = True
    return run_graph(
        started["graph"],
        repo,
        config_path=opts_event.get("config_path"),
        options=opts,
        backend=backend,
    )


def cancel_run(repo: str | Path, run: str, *, backend: Backend | None = None) -> list[str]:
    """Mark ``run`` cancelled and cancel its unfinished jobs; return their job names.

    The orchestrator of a running ``rc2 run`` sees the mark at its next poll and kills its
    local jobs itself. HTCondor and Kubernetes jobs are also cancelled here, from the
    handles recorded in the journal (local handles cannot be used from another process).
    """
    journal = Journal.for_run(repo, run, must_exist=True)
    journal.append("cancel_requested")
    open_jobs: dict[tuple[str, int], JobHandle] = {}
    for event in journal.events():
        key = (event.get("cluster", ""), int(event.get("attempt", 0)))
        if event["event"] == "job_submitted":
            open_jobs[key] = JobHandle.from_dict(event["handle"])
        elif event["event"] == "job_finished":
            open_jobs.pop(key, None)
    remote = [h for h in open_jobs.values() if h.backend != "local"]
    if remote:
        if backend is None:
            opts_event = journal.last("options") or {}
            config = load_execution_config(opts_event.get("config_path"))
            backend = make_backend(config, remote[0].backend)
        backend.cancel(remote)
    return sorted(h.job_name for h in open_jobs.values())
