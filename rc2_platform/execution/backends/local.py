"""The local backend: cluster jobs as processes on this machine, with a concurrency limit.

With ``launcher="subprocess"`` every job is a new process running its command; with
``launcher="forkserver"`` (the execution config's default) worker jobs (``rc2 run-cluster``)
are forked from a server that imported the package once (see ``_fork.py``), which saves
the ~1 s of Python start-up per job; other commands still run as subprocesses. Each job runs in its own session (process group), with stdout/stderr appended to
``<log_dir>/<name>.out`` and ``.err``. A failed job is started again up to
``job.max_retries`` times. Memory requests are recorded but not enforced. State lives
in this object: handles are only valid for the backend instance that made them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, ClassVar, Literal

from rc2_platform.errors import JobSubmissionError, UnknownJobHandleError

from ._fork import ForkedJob, is_worker_command
from .base import Backend, ClusterJob, JobHandle, JobState, JobStatus

__all__ = ["LocalBackend"]

_ids = itertools.count(1)


@dataclass
class _Job:
    handle: JobHandle
    job: ClusterJob
    process: subprocess.Popen[bytes] | ForkedJob | None = None
    attempts: int = 0
    status: JobStatus = field(default_factory=lambda: JobStatus(JobState.PENDING))
    cancelled: bool = False
    files: list[IO[bytes]] = field(default_factory=list)


class LocalBackend(Backend):
    """Run cluster jobs as local subprocesses, at most ``max_workers`` at a time.

    Parameters
    ----------
    max_workers : `int`
        Maximum number of jobs running at once.
    kill_grace_seconds : `float`
        On cancel, time between SIGTERM and SIGKILL of the job's process group.
    launcher : `str`
        ``"subprocess"`` (a new process per job), ``"forkserver"`` (``rc2`` commands are
        forked from a pre-imported server; other commands run as subprocesses) or
        ``"fork"`` (``rc2`` commands are forked from this process, which must already
        have the job modules imported: a Dagster step forked from ``rc2_executor``'s
        preloading server).
    preload : `~collections.abc.Sequence` [`str`]
        Extra modules the fork server imports (e.g. the science tasks' modules).
    """

    name: ClassVar[str] = "local"

    def __init__(
        self,
        max_workers: int = 2,
        kill_grace_seconds: float = 5.0,
        launcher: Literal["subprocess", "forkserver", "fork"] = "subprocess",
        preload: Sequence[str] = (),
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, not {max_workers}")
        if launcher not in ("subprocess", "forkserver", "fork"):
            raise ValueError(
                f"launcher must be 'subprocess', 'forkserver' or 'fork', not {launcher!r}"
            )
        self.launcher = launcher
        self.preload = tuple(preload)
        self.max_workers = max_workers
        self.kill_grace_seconds = kill_grace_seconds
        self._lock = threading.RLock()
        self._jobs: dict[str, _Job] = {}
        self._queue: deque[_Job] = deque()
        self._running: dict[str, _Job] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- public API ------------------------------------------------------------------

    def submit(self, jobs: Sequence[ClusterJob]) -> list[JobHandle]:
        """Queue ``jobs``; they start as worker slots free up."""
        names = [j.name for j in jobs]
        if len(set(names)) != len(names):
            raise JobSubmissionError(f"Duplicate cluster job names in one submission: {names}.")
        handles = []
        with self._lock:
            for job in jobs:
                handle = JobHandle(
                    id=f"local-{os.getpid()}-{next(_ids)}", job_name=job.name, backend=self.name
                )
                entry = _Job(handle=handle, job=job)
                self._jobs[handle.id] = entry
                self._queue.append(entry)
                handles.append(handle)
            self._ensure_thread()
        self._wake.set()
        return handles

    def status(self, handles: Sequence[JobHandle]) -> dict[str, JobStatus]:
        """Return the status of each handle (keyed by ``handle.id``)."""
        with self._lock:
            self._pump()
            return {h.id: self._entry(h).status for h in handles}

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        """Kill the jobs' process groups (SIGTERM, then SIGKILL); queued jobs never start."""
        to_wait = []
        with self._lock:
            for handle in handles:
                entry = self._entry(handle)
                if entry.status.state.is_terminal:
                    continue
                entry.cancelled = True
                if entry.process is None:
                    self._queue.remove(entry)
                    entry.status = JobStatus(JobState.REMOVED, reason="cancelled before start")
                else:
                    _signal_group(entry.process, signal.SIGTERM)
                    to_wait.append(entry)
        deadline = time.monotonic() + self.kill_grace_seconds
        for entry in to_wait:
            assert entry.process is not None
            try:
                entry.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(entry.process, signal.SIGKILL)
                entry.process.wait()
        with self._lock:
            self._pump()

    def wait(
        self,
        handles: Sequence[JobHandle],
        poll_seconds: float = 0.05,
        timeout: float | None = None,
    ) -> dict[str, JobStatus]:
        """Block until every job finished (see :meth:`Backend.wait`); polls every 50 ms."""
        return super().wait(handles, poll_seconds=poll_seconds, timeout=timeout)

    # -- internals -------------------------------------------------------------------

    def _entry(self, handle: JobHandle) -> _Job:
        self._check_handles([handle])
        try:
            return self._jobs[handle.id]
        except KeyError:
            raise UnknownJobHandleError(
                f"Local job {handle.id!r} ({handle.job_name}) was not submitted by this backend "
                "instance; local jobs can only be queried by the process that started them."
            ) from None

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._loop, name="rc2-local-backend", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        while True:
            self._wake.wait(timeout=0.05)
            self._wake.clear()
            with self._lock:
                self._pump()
                if not self._queue and not self._running:
                    self._thread = None
                    return

    def _pump(self) -> None:
        """Collect finished processes, retry or finalize them, start queued jobs."""
        for job_id, entry in list(self._running.items()):
            assert entry.process is not None
            code = entry.process.poll()
            if code is None:
                continue
            del self._running[job_id]
            self._close_files(entry)
            self._finish(entry, code)
        while self._queue and len(self._running) < self.max_workers:
            entry = self._queue.popleft()
            self._start(entry)

    def _finish(self, entry: _Job, code: int) -> None:
        if entry.cancelled:
            entry.status = JobStatus(JobState.REMOVED, code, "cancelled", entry.attempts)
        elif code == 0:
            entry.status = JobStatus(JobState.SUCCEEDED, 0, None, entry.attempts)
        elif entry.attempts <= entry.job.max_retries:
            entry.status = JobStatus(
                JobState.PENDING, code, f"retrying after exit code {code}", entry.attempts
            )
            self._queue.appendleft(entry)
        else:
            reason = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            entry.status = JobStatus(JobState.FAILED, code, reason, entry.attempts)

    def _start(self, entry: _Job) -> None:
        job = entry.job
        entry.attempts += 1
        try:
            job.log_dir.mkdir(parents=True, exist_ok=True)
            job.working_dir.mkdir(parents=True, exist_ok=True)
            out = open(job.log_dir / f"{job.name}.out", "ab")  # noqa: SIM115 - closed in _pump
            err = open(job.log_dir / f"{job.name}.err", "ab")  # noqa: SIM115
            entry.files = [out, err]
            header = f"--- rc2 local backend: attempt {entry.attempts} of {job.name}\n".encode()
            out.write(header)
            out.flush()
            entry.process = self._launch(job, out, err)
        except OSError as exc:
            self._close_files(entry)
            entry.status = JobStatus(
                JobState.FAILED, None, f"could not start {job.command[0]!r}: {exc}", entry.attempts
            )
            return
        entry.status = JobStatus(JobState.RUNNING, None, None, entry.attempts)
        self._running[entry.handle.id] = entry

    def _launch(
        self, job: ClusterJob, out: IO[bytes], err: IO[bytes]
    ) -> subprocess.Popen[bytes] | ForkedJob:
        if self.launcher in ("forkserver", "fork") and is_worker_command(job.command):
            return ForkedJob(
                job.command,
                job.working_dir,
                job.env,
                job.log_dir / f"{job.name}.out",
                job.log_dir / f"{job.name}.err",
                self.preload,
                method=self.launcher,
            )
        return subprocess.Popen(
            job.command,
            cwd=job.working_dir,
            env={**os.environ, **job.env},
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @staticmethod
    def _close_files(entry: _Job) -> None:
        for f in entry.files:
            f.close()
        entry.files = []


def _signal_group(process: subprocess.Popen[bytes] | ForkedJob, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group of ``process`` (its own session)."""
    if isinstance(process, ForkedJob):
        process.signal_group(sig)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
