"""The orchestrating side: plan clusters, submit them to a backend, register, retry, resume.

:func:`run_graph` (``rc2 run`` / ``rc2 submit`` / ``rc2 restart``):

The local driver of the run-state machine (:class:`~.run_state.RunState`):

1. :meth:`RunState.prepare`: refuses a graph whose inputs the repository lacks, registers
   the RUN and the graph's output dataset types, writes the init-outputs once, exports the
   overall inputs' datastore records for workers; with ``resume``, registers what earlier
   jobs recorded and skips every quantum whose outputs are all registered;
2. submits each cluster as soon as the clusters it reads from have finished
   (:meth:`RunState.ready_clusters`, :meth:`RunState.runnable`: quanta behind a failure
   are blocked);
3. when a job finishes, :meth:`RunState.settle` reads its records (failed quanta with
   retries left go into a new attempt, with more memory after a memory kill) and the
   registration step (:func:`~.aggregate.aggregate_run`) registers its succeeded quanta's
   outputs; at the end the RUN's provenance dataset is written;
4. every step goes to the RUN's journal, which ``rc2 report`` reads.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rc2_platform.butler import Butler
from rc2_platform.errors import ExecutionError
from rc2_platform.execution.aggregate import aggregate_run
from rc2_platform.execution.backends import Backend, JobHandle, make_backend
from rc2_platform.execution.execution_config import ExecutionConfig, load_execution_config
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.run_state import (
    JobAttempt,
    RunState,
    RunStatus,
    Settlement,
    WorkerSettings,
)

__all__ = [
    "OnSettled",
    "RunOptions",
    "RunSummary",
    "cancel_run",
    "drive",
    "restart_run",
    "run_graph",
    "worker_command",
]


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
        Continue the RUN: register what earlier jobs recorded, skip quanta whose outputs
        are registered.
    extend_run : bool
        Run into a RUN that already holds other outputs (skipping quanta whose outputs
        exist); without it or ``resume``, a RUN holding outputs is refused.
    takeover : bool
        Take the RUN's lock from a holder not known to be dead (after a crash on
        another host, or of a workflow).
    poll_seconds : float
        Pause between backend status polls (local jobs: at most 10 ms, since a poll there
        costs microseconds and every pause delays the next job's start).
    executable : list of str or None
        Command prefix running the ``rc2`` CLI on workers; the ``rc2`` script next to
        this Python (local) or ``rc2`` on the PATH when None.
    progress : callable or None
        Called with the number of quanta per state (every :class:`QuantumState` value)
        once the RUN is prepared and again each time a job attempt is settled; the CLI
        draws its progress bar from it.
    register_seconds, register_quanta : float, int
        Settled jobs' outputs are registered (``aggregate_run`` of their clusters) in
        batches: once ``register_quanta`` quanta are waiting or ``register_seconds``
        after the oldest waiting one settled, and at the end. Jobs read their inputs
        from files, not the registry, so nothing waits for it; one registration per
        small job cost the orchestrator ~10 ms per quantum of a 12-quantum job.
    """

    backend: str | None = None
    processes: int | None = None
    jobs: int | None = None
    resume: bool = False
    extend_run: bool = False
    takeover: bool = False
    poll_seconds: float = 0.05
    executable: list[str] | None = None
    progress: Callable[[Mapping[str, int]], None] | None = None
    register_seconds: float = 5.0
    register_quanta: int = 5_000


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


def _poll_pause(backend: Backend, options: RunOptions) -> float:
    # A local poll costs microseconds and every pause delays the next job's start.
    return min(options.poll_seconds, 0.01) if backend.name == "local" else options.poll_seconds


class _Registration:
    """Settled clusters whose outputs are not registered yet (see ``RunOptions.register_*``)."""

    def __init__(self, state: RunState, butler: Butler, options: RunOptions) -> None:
        self.state, self.butler, self.options = state, butler, options
        self.clusters: set[str] = set()
        self.quanta = 0
        self.since = 0.0

    def add(self, attempt: JobAttempt) -> None:
        if not self.clusters:
            self.since = time.monotonic()
        self.clusters.add(attempt.cluster)
        self.quanta += len(attempt.quanta)

    def maybe_flush(self) -> None:
        waited = time.monotonic() - self.since
        if self.clusters and (
            self.quanta >= self.options.register_quanta or waited >= self.options.register_seconds
        ):
            self.flush()

    def flush(self) -> None:
        if self.clusters:
            aggregate_run(
                self.state.repo, self.state.run, clusters=self.clusters, provenance=False,
                butler=self.butler,
            )  # fmt: skip
            self.clusters, self.quanta = set(), 0


#: Called by :func:`drive` with a state and each settlement of one of its jobs.
OnSettled = Callable[[RunState, Settlement], None]


def drive(
    states: Sequence[RunState],
    backend: Backend,
    butler: Butler,
    options: RunOptions,
    on_settled: OnSettled | None = None,
) -> list[RunStatus]:
    """Run prepared graphs to their end on one backend: ``rc2 run``'s loop.

    Each state's clusters are submitted as soon as the clusters they read from have
    finished (no stage barriers); finished jobs are settled (retries, memory escalation)
    and their outputs registered in batches (``RunOptions.register_*``); a state whose
    journal has ``cancel_requested`` has its jobs cancelled. Several states (graphs of
    different RUNs) share the backend's concurrency limit. ``on_settled`` is called after
    every settlement (a cluster is final when ``settlement.retry`` is None). On any
    exception (Ctrl-C, a run termination) the running jobs are cancelled first.

    Returns each state's final status (``cancelled``, else ``succeeded``/``failed``);
    the caller journals ``run_finished``.
    """
    try:
        return _loop(states, backend, butler, _poll_pause(backend, options), options, on_settled)
    except BaseException:
        for state in states:
            attempts = state.cancel_active("orchestrator aborted")
            backend.cancel([a.handle for a in attempts if a.handle is not None])
        raise


def _counts(states: Sequence[RunState]) -> dict[str, int]:
    total: dict[str, int] = {}
    for state in states:
        for key, n in state.counts().items():
            total[key] = total.get(key, 0) + n
    return total


def _loop(
    states: Sequence[RunState],
    backend: Backend,
    butler: Butler,
    pause: float,
    options: RunOptions,
    on_settled: OnSettled | None,
) -> list[RunStatus]:
    """Submit clusters as soon as their parents are done; settle finished jobs and
    register their outputs in batches."""
    progress = options.progress
    registrations = [_Registration(state, butler, options) for state in states]
    final: list[RunStatus | None] = [None] * len(states)
    if progress is not None:
        progress(_counts(states))
    # Per state: clusters may have become ready (only settling and blocking do that).
    changed = [True] * len(states)
    while True:
        for k, state in enumerate(states):
            if final[k] is not None:
                continue
            final[k] = _step(state, backend, registrations[k], changed, k, on_settled)
            if progress is not None and (final[k] is not None or changed[k]):
                progress(_counts(states))
        if all(status is not None for status in final):
            return [status for status in final if status is not None]
        if not any(changed[k] for k in range(len(states)) if final[k] is None):
            time.sleep(pause)


def _step(
    state: RunState,
    backend: Backend,
    registration: _Registration,
    changed: list[bool],
    k: int,
    on_settled: OnSettled | None,
) -> RunStatus | None:
    """One pass of the loop over one state; its final status once it has ended."""
    state.heartbeat()
    if state.journal.cancel_requested():
        attempts = state.cancel_active()
        backend.cancel([a.handle for a in attempts if a.handle is not None])
        registration.flush()
        return RunStatus.CANCELLED
    if changed[k]:
        ready = state.ready_clusters()
        _make_and_submit(state, backend, ready)
        changed[k] = bool(ready)  # a cluster left with nothing to run unlocks its children
    if not state.active:
        registration.flush()
        return state.final_status()
    running = list(state.active.values())
    statuses = backend.status([a.handle for a in running if a.handle is not None])
    for attempt in running:
        assert attempt.handle is not None
        status = statuses[attempt.handle.id]
        if status.state.is_terminal:
            settlement = state.settle(attempt, status)
            registration.add(attempt)
            changed[k] = True
            if settlement.retry is not None:
                _submit(state, backend, [settlement.retry])
            if on_settled is not None:
                on_settled(state, settlement)
    registration.maybe_flush()
    return None


def _make_and_submit(state: RunState, backend: Backend, ready: Sequence[str]) -> None:
    """Make the jobs of the ``ready`` clusters and submit them in growing chunks (1, 2, 4 ...).

    Making a job writes its graph file (a few ms): the first job starts without waiting
    for every other ready job's file (50 at the start of a tract), while a batch system
    still gets only a logarithmic number of submissions.
    """
    chunk: list[JobAttempt] = []
    size = 1
    for name in ready:
        quanta = state.runnable(name)
        if not quanta:
            continue
        chunk.append(state.make_job(name, quanta))
        if len(chunk) >= size:
            _submit(state, backend, chunk)
            chunk, size = [], size * 2
    _submit(state, backend, chunk)


def _submit(state: RunState, backend: Backend, attempts: list[JobAttempt]) -> None:
    if attempts:
        handles = backend.submit([a.job for a in attempts])
        for attempt, handle in zip(attempts, handles, strict=True):
            state.submitted(attempt, handle)


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
    worker = WorkerSettings(
        worker_command(options.executable),
        options.processes or config.processes_per_job,
        backend.name,
    )
    with Butler(repo) as butler:
        state = RunState.load(graph_path, butler.root, config, worker)
        state.prepare(
            butler, resume=options.resume, extend_run=options.extend_run,
            takeover=options.takeover,
        )  # fmt: skip
        finished = False
        try:
            state.journal.append(
                "options",
                config_path=None if config_path is None else str(Path(config_path).resolve()),
                jobs=options.jobs,
                backend=backend.name,
            )
            (status,) = _loop(
                [state], backend, butler, _poll_pause(backend, options), options, None
            )
            counts = state.finish(status, release=False)
            finished = True
            aggregate_run(state.repo, state.run, butler=butler)  # last outputs + provenance
        except BaseException:
            attempts = state.cancel_active("orchestrator aborted")
            backend.cancel([a.handle for a in attempts if a.handle is not None])
            if not finished:
                state.finish(RunStatus.ABORTED, release=False)
            raise
        finally:
            state.release()
        return RunSummary(state.run, status.value, counts, state.journal.path)


def restart_run(
    repo: str | Path,
    run: str,
    *,
    backend: Backend | None = None,
    options: RunOptions | None = None,
    takeover: bool = False,
    progress: Callable[[Mapping[str, int]], None] | None = None,
) -> RunSummary:
    """Resume ``run`` from its journal: same graph, config and backend, skipping done quanta.

    ``takeover`` takes the RUN's lock from a holder not known to be dead; ``progress``
    is :attr:`RunOptions.progress`.
    """
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
    opts.takeover = opts.takeover or takeover
    opts.progress = opts.progress or progress
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
