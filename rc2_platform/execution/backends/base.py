"""The backend interface: cluster jobs, job handles, job states.

A *cluster job* is one batch job that runs several quanta (``rc2 run-cluster ...``).
Every backend (local processes, HTCondor, Kubernetes) accepts a sequence of
:class:`ClusterJob`, returns one :class:`JobHandle` per job, and reports a
:class:`JobStatus` per handle. Handles are plain data (``to_dict``/``from_dict``) so
that a later process (``rc2 report``, ``rc2 cancel``) can query jobs it did not submit,
where the backend allows it (HTCondor, Kubernetes; not the in-memory local backend).
"""

from __future__ import annotations

import enum
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rc2_platform.errors import ConfigError, JobWaitTimeoutError, UnknownJobHandleError

__all__ = [
    "Backend",
    "ClusterJob",
    "JobHandle",
    "JobState",
    "JobStatus",
    "TERMINAL_STATES",
]


class JobState(enum.Enum):
    """The state of one cluster job, common to all backends."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    HELD = "HELD"
    REMOVED = "REMOVED"

    @property
    def is_terminal(self) -> bool:
        """True for states a job never leaves (SUCCEEDED, FAILED, REMOVED)."""
        return self in TERMINAL_STATES


#: States a job never leaves. HELD is not terminal: a release puts the job back to PENDING.
TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.REMOVED})


@dataclass(frozen=True)
class JobStatus:
    """The state of a job plus what is known about why.

    Parameters
    ----------
    state : `JobState`
        Current state.
    exit_code : `int` or `None`
        Process exit code once the job terminated normally.
    reason : `str` or `None`
        Hold / removal / failure reason (e.g. ``"killed by signal 9"``).
    attempts : `int`
        How many times the job has started (retries included).
    retryable : `bool`
        False when a new attempt would fail the same way (a Kubernetes pod whose image
        cannot be pulled, or that no node can take): the orchestrator does not retry it.
    memory_exceeded : `bool`
        The batch system stopped the job for its memory use (HTCondor: held for memory
        until its in-queue retries ran out, then removed); the orchestrator's retry asks
        for more memory, as after a SIGKILL or a ``MemoryError``.
    escalated_in_queue : `bool`
        The batch system itself raised the memory request at each of the ``attempts``
        starts (HTCondor's ``request_memory`` expression), so the retry's request goes
        one step beyond the last start's. False elsewhere: a Kubernetes Job's pods all
        ran with the same request, whatever their number.
    """

    state: JobState
    exit_code: int | None = None
    reason: str | None = None
    attempts: int = 0
    retryable: bool = True
    memory_exceeded: bool = False
    escalated_in_queue: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        data: dict[str, Any] = {
            "state": self.state.value,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "attempts": self.attempts,
        }
        if not self.retryable:
            data["retryable"] = False
        if self.memory_exceeded:
            data["memory_exceeded"] = True
        if self.escalated_in_queue:
            data["escalated_in_queue"] = True
        return data


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True)
class ClusterJob:
    """One batch job running a cluster of quanta.

    Parameters
    ----------
    name : `str`
        Unique job name within a submission, e.g. ``"step1-visit-1228"``; letters,
        digits, ``-``, ``_`` and ``.`` only (it becomes a file name, an HTCondor DAG
        node name and part of a Kubernetes object name).
    command : `list` [`str`]
        The argument vector, e.g. ``["rc2", "run-cluster", GRAPH, "--cluster", NAME]``.
    request_memory_mb : `int`
        Memory to request, in MiB (first attempt; HTCondor escalates it on retries).
    request_cpus : `int`
        CPU cores to request.
    env : `dict` [`str`, `str`]
        Extra environment variables for the job.
    labels : `dict` [`str`, `str`]
        Free-form labels (``step``, ``tract``, ``run`` ...), copied to HTCondor job
        attributes and Kubernetes labels.
    working_dir : `pathlib.Path`
        Directory the command runs in.
    log_dir : `pathlib.Path`
        Directory for stdout/stderr (and the HTCondor job event log).
    max_retries : `int`, optional
        How often a failed job is started again (memory-killed jobs with more memory
        on HTCondor). The clustering code takes the maximum over the job's tasks.
    """

    name: str
    command: list[str]
    request_memory_mb: int
    request_cpus: int
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    working_dir: Path = field(default_factory=Path.cwd)
    log_dir: Path = field(default_factory=Path.cwd)
    max_retries: int = 0

    def __post_init__(self) -> None:
        if not self.name or not set(self.name) <= _NAME_CHARS:
            raise ConfigError(
                f"Cluster job name {self.name!r} is invalid: use letters, digits, '-', '_' "
                "and '.' only."
            )
        if not self.command:
            raise ConfigError(f"Cluster job {self.name!r} has an empty command.")
        if self.request_memory_mb <= 0 or self.request_cpus <= 0:
            raise ConfigError(
                f"Cluster job {self.name!r}: request_memory_mb ({self.request_memory_mb}) and "
                f"request_cpus ({self.request_cpus}) must be positive."
            )
        if self.max_retries < 0:
            raise ConfigError(f"Cluster job {self.name!r}: max_retries must be >= 0.")


@dataclass(frozen=True)
class JobHandle:
    """A submitted job, as returned by :meth:`Backend.submit`.

    Parameters
    ----------
    id : `str`
        Backend-specific job id (``"local-3"``, HTCondor ``"1234.0"``, Kubernetes
        ``"namespace/job-name"``); the key of :meth:`Backend.status` results.
    job_name : `str`
        The :attr:`ClusterJob.name` it was submitted for.
    backend : `str`
        ``"local"``, ``"htcondor"`` or ``"kubernetes"``.
    info : `dict` [`str`, `str`]
        Backend extras (HTCondor: the event log path).
    """

    id: str
    job_name: str
    backend: str
    info: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (round-trips through :meth:`from_dict`)."""
        return {
            "id": self.id,
            "job_name": self.job_name,
            "backend": self.backend,
            "info": dict(self.info),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobHandle:
        """Rebuild a handle written by :meth:`to_dict`."""
        return cls(
            id=str(data["id"]),
            job_name=str(data["job_name"]),
            backend=str(data["backend"]),
            info={str(k): str(v) for k, v in dict(data.get("info", {})).items()},
        )


class Backend(ABC):
    """Where cluster jobs run: submit, query, cancel and wait."""

    #: Short name stored in every handle this backend makes.
    name: ClassVar[str]

    @abstractmethod
    def submit(self, jobs: Sequence[ClusterJob]) -> list[JobHandle]:
        """Submit ``jobs``; return one handle per job, in order. Does not block on them."""

    @abstractmethod
    def status(self, handles: Sequence[JobHandle]) -> dict[str, JobStatus]:
        """Return the current status of each handle, keyed by ``handle.id``."""

    @abstractmethod
    def cancel(self, handles: Sequence[JobHandle]) -> None:
        """Stop the jobs (HTCondor: remove; Kubernetes: delete; local: kill)."""

    def wait(
        self,
        handles: Sequence[JobHandle],
        poll_seconds: float = 5.0,
        timeout: float | None = None,
    ) -> dict[str, JobStatus]:
        """Poll :meth:`status` until every job is SUCCEEDED, FAILED or REMOVED.

        Parameters
        ----------
        handles : `~collections.abc.Sequence` [`JobHandle`]
            Jobs to wait for.
        poll_seconds : `float`
            Pause between polls.
        timeout : `float`, optional
            Give up after this many seconds (the jobs keep running).

        Returns
        -------
        statuses : `dict` [`str`, `JobStatus`]
            Final statuses keyed by handle id.

        Raises
        ------
        JobWaitTimeoutError
            If ``timeout`` passed before every job finished.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            statuses = self.status(handles)
            if all(s.state.is_terminal for s in statuses.values()):
                return statuses
            if deadline is not None and time.monotonic() >= deadline:
                waiting = sorted(
                    h.job_name for h in handles if not statuses[h.id].state.is_terminal
                )
                raise JobWaitTimeoutError(
                    f"{len(waiting)} job(s) still not finished after {timeout} s "
                    f"(e.g. {', '.join(waiting[:5])}); they keep running: check them with "
                    "`rc2 report` or cancel them."
                )
            time.sleep(poll_seconds)

    def _check_handles(self, handles: Sequence[JobHandle]) -> None:
        """Raise :class:`UnknownJobHandleError` for handles of another backend."""
        for handle in handles:
            if handle.backend != self.name:
                raise UnknownJobHandleError(
                    f"Job handle {handle.id!r} ({handle.job_name}) belongs to backend "
                    f"{handle.backend!r}, not {self.name!r}: query it with that backend."
                )
