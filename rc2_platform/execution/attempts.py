"""Value types of the run-state machine: a RUN's status, how jobs run the worker, one
attempt of one cluster job, and what settling an attempt concluded.

They live apart from :class:`~rc2_platform.execution.run_state.RunState` (which re-exports
them) so that readers of journals and reports need not load the state machine.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rc2_platform.execution.backends import ClusterJob, JobHandle, JobStatus
from rc2_platform.execution.executor import QuantumOutcome
from rc2_platform.execution.job import error_summary
from rc2_platform.execution.quantum_state import QuantumState
from rc2_platform.execution.records import RECORDS_FILE

__all__ = [
    "JOB_DIED",
    "MEMORY_KILL_CODES",
    "JobAttempt",
    "RunStatus",
    "Settlement",
    "WorkerSettings",
    "job_finished_fields",
    "job_output_files",
]

#: ``error_type`` of a quantum whose job ended without recording it.
JOB_DIED = "JobDied"

#: Exit statuses meaning "killed for memory" on a local machine (SIGKILL from the OOM killer).
MEMORY_KILL_CODES = frozenset({-signal.SIGKILL, 128 + signal.SIGKILL})


class RunStatus(enum.StrEnum):
    """The status of a whole RUN's execution (``run_finished`` and ``rc2 report``)."""

    RUNNING = "running"
    SUBMITTED = "submitted"
    """Handed to DAGMan; its FINAL node finishes it."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """Some quanta failed, are blocked or never ran; the rest is done."""
    CANCELLED = "cancelled"
    ABORTED = "aborted"
    """The orchestrator stopped on an error (or Ctrl-C) and cancelled its jobs."""
    INTERRUPTED = "interrupted"
    """The orchestrator died (no ``run_finished``, its process is gone)."""


@dataclass(frozen=True)
class WorkerSettings:
    """How cluster jobs run the worker.

    Attributes
    ----------
    command : list of str
        Prefix running the worker entry point (``[".../rc2"]`` or
        ``[python, "-m", "rc2_platform.execution.pipes_worker"]``); ``run-cluster ...``
        follows.
    processes : int
        Processes per cluster job.
    backend : str
        Name of the backend the jobs go to: ``local`` jobs are retried by the run-state
        machine itself (no backend retries), batch jobs also by their backend.
    """

    command: list[str]
    processes: int = 1
    backend: str = "local"


@dataclass
class JobAttempt:
    """One attempt of one cluster job: what to submit and where it writes.

    Attributes
    ----------
    cluster : str
        Cluster name (from the cluster plan).
    attempt : int
        1 for the first attempt, 2 for its first retry, ...
    quanta : list of int
        Quantum indexes it runs.
    memory_mb : int
        Memory requested.
    directory : Path
        ``REPO/_runs/<run>/jobs/<cluster>/attempt<N>`` (job graph, records, logs).
    job : ClusterJob
        The backend job.
    handle : JobHandle or None
        Set by :meth:`RunState.submitted`.
    """

    cluster: str
    attempt: int
    quanta: list[int]
    memory_mb: int
    directory: Path
    job: ClusterJob
    handle: JobHandle | None = None

    @property
    def result_path(self) -> Path:
        """The job's records file (one record per quantum, see ``records.py``)."""
        return self.directory / RECORDS_FILE


@dataclass
class Settlement:
    """What :meth:`RunState.settle` concluded from a finished attempt.

    Attributes
    ----------
    attempt : JobAttempt
        The attempt settled.
    outcomes : list of QuantumOutcome
        One per quantum of the attempt (from the job's records; a job that died
        without recording a quantum gives it a ``JobDied`` failure).
    died : bool
        The job recorded none of its quanta.
    retry : JobAttempt or None
        The next attempt to submit (failed quanta with retries left and the quanta
        blocked behind them), not yet submitted.
    """

    attempt: JobAttempt
    outcomes: list[QuantumOutcome]
    died: bool
    retry: JobAttempt | None = None

    def errors(self) -> dict[str, int]:
        """First line of each final failure's message -> number of quanta."""
        retried = set(self.retry.quanta) if self.retry else set()
        return error_summary(o for o in self.outcomes if o.index not in retried)

    def final_failures(self) -> list[dict[str, Any]]:
        """The failed quanta that are not retried: task, data ID, error, type, attempt."""
        retried = set(self.retry.quanta) if self.retry else set()
        return [
            {
                "task": o.task_label,
                "data_id": dict(o.data_id),
                "error": o.error or "unknown error",
                "error_type": o.error_type or "",
                "attempt": self.attempt.attempt,
            }
            for o in self.outcomes
            if o.status is QuantumState.FAILED and o.index not in retried
        ]


def job_finished_fields(
    cluster: str,
    attempt: int,
    status: JobStatus,
    result: Path | None,
    unrecorded: list[int],
    directory: Path | None = None,
) -> dict[str, Any]:
    """The fields of the ``job_finished`` journal event of one settled attempt.

    The one definition :meth:`RunState.settle` and the DAGMan POST script's fast path
    (:mod:`~rc2_platform.execution.dagman_post`) both journal.

    Parameters
    ----------
    cluster : str
        The cluster.
    attempt : int
        The attempt number.
    status : JobStatus
        How the job ended.
    result : Path or None
        Its records file; None when the job recorded nothing (it died).
    unrecorded : list of int
        The attempt's quanta the job did not record (failed as ``JobDied``).
    directory : Path, optional
        The attempt's folder: its job's stdout and stderr files there
        (``<cluster>.out`` / ``.err``, the local and HTCondor backends write them; a
        DAGMan node's retry too) are named as ``stdout`` / ``stderr`` when they exist.
    """
    fields: dict[str, Any] = {
        "cluster": cluster,
        "attempt": attempt,
        "status": status.to_dict(),
        "result": None if result is None else str(result),
        "died": result is None,
        "unrecorded": unrecorded,
    }
    fields.update(job_output_files(cluster, directory))
    return fields


def job_output_files(cluster: str, directory: Path | None) -> dict[str, str]:
    """``{"stdout": path, "stderr": path}`` of an attempt's job, those that exist."""
    if directory is None:
        return {}
    files = {"stdout": directory / f"{cluster}.out", "stderr": directory / f"{cluster}.err"}
    return {key: str(path) for key, path in files.items() if path.is_file()}
