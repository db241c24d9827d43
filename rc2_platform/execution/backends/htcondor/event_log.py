"""HTCondor job event logs: write events in the real text format, read them into job states.

The reader uses ``htcondor2.JobEventLog`` (the official parser), so the states come from
exactly what a schedd writes. The writer is used by the local schedd test double
(:class:`~rc2_platform.execution.backends.htcondor.schedd.LocalScheddDouble`); its
output is proven readable by ``JobEventLog`` in the tests.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import htcondor2

from ..base import JobState, JobStatus

__all__ = ["EventLogWriter", "Hold", "read_event_log", "read_event_log_holds"]

_USAGE = (
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Remote Usage\n"
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage\n"
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Total Remote Usage\n"
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Total Local Usage\n"
    "\t0  -  Run Bytes Sent By Job\n"
    "\t0  -  Run Bytes Received By Job\n"
    "\t0  -  Total Bytes Sent By Job\n"
    "\t0  -  Total Bytes Received By Job\n"
)

_HOST = "<127.0.0.1:0?alias=rc2-local-schedd>"


class EventLogWriter:
    """Append job events to a user job event log in HTCondor's text format."""

    _locks: dict[Path, threading.Lock] = {}
    _locks_guard = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with self._locks_guard:
            self._lock = self._locks.setdefault(self.path.resolve(), threading.Lock())

    def _write(self, code: int, cluster: int, proc: int, headline: str, body: str = "") -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        text = f"{code:03d} ({cluster:03d}.{proc:03d}.000) {stamp} {headline}\n{body}...\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(text)

    def submitted(self, cluster: int, proc: int, dag_node: str | None = None) -> None:
        """Write event 000 (job submitted)."""
        note = f"    DAG Node: {dag_node}\n" if dag_node else ""
        self._write(0, cluster, proc, f"Job submitted from host: {_HOST}", note)

    def executing(self, cluster: int, proc: int) -> None:
        """Write event 001 (job executing)."""
        self._write(1, cluster, proc, f"Job executing on host: {_HOST}")

    def terminated(self, cluster: int, proc: int, return_value: int) -> None:
        """Write event 005 (job terminated); a negative value means killed by that signal."""
        if return_value >= 0:
            how = f"\t(1) Normal termination (return value {return_value})\n"
        else:
            how = f"\t(0) Abnormal termination (signal {-return_value})\n\t(0) No core file\n"
        self._write(5, cluster, proc, "Job terminated.", how + _USAGE)

    def aborted(self, cluster: int, proc: int, reason: str) -> None:
        """Write event 009 (job aborted, i.e. removed)."""
        self._write(9, cluster, proc, "Job was aborted.", f"\t{reason}\n")

    def held(self, cluster: int, proc: int, reason: str, code: int, subcode: int) -> None:
        """Write event 012 (job held) with its hold reason code and subcode."""
        self._write(
            12, cluster, proc, "Job was held.", f"\t{reason}\n\tCode {code} Subcode {subcode}\n"
        )

    def released(self, cluster: int, proc: int, reason: str) -> None:
        """Write event 013 (job released)."""
        self._write(13, cluster, proc, "Job was released.", f"\t{reason}\n")


def _apply(event: htcondor2.JobEvent, previous: JobStatus | None) -> JobStatus:
    """Return the status after ``event`` given the status before it."""
    attempts = previous.attempts if previous else 0
    kind = event.type
    if kind == htcondor2.JobEventType.EXECUTE:
        return JobStatus(JobState.RUNNING, None, None, attempts + 1)
    if kind == htcondor2.JobEventType.JOB_TERMINATED:
        if event.get("TerminatedNormally", False):
            code = int(event["ReturnValue"])
            state = JobState.SUCCEEDED if code == 0 else JobState.FAILED
            return JobStatus(state, code, None if code == 0 else f"exit code {code}", attempts)
        signal = event.get("TerminatedBySignal")
        return JobStatus(JobState.FAILED, None, f"killed by signal {signal}", attempts)
    if kind == htcondor2.JobEventType.JOB_ABORTED:
        return JobStatus(JobState.REMOVED, None, str(event.get("Reason", "removed")), attempts)
    if kind == htcondor2.JobEventType.JOB_HELD:
        reason = (
            f"{event.get('HoldReason', 'held')} (HoldReasonCode {event.get('HoldReasonCode')}, "
            f"subcode {event.get('HoldReasonSubCode')})"
        )
        return JobStatus(JobState.HELD, None, reason, attempts)
    if kind in (
        htcondor2.JobEventType.SUBMIT,
        htcondor2.JobEventType.JOB_RELEASED,
        htcondor2.JobEventType.JOB_EVICTED,
    ):
        return JobStatus(JobState.PENDING, None, None, attempts)
    return previous or JobStatus(JobState.PENDING)


@dataclass(frozen=True)
class Hold:
    """The hold a job is in, from its last job-held event (012).

    ``number`` counts the job's holds (1 for its first): a job released and held again
    is in a new hold.
    """

    code: int | None
    subcode: int | None
    reason: str
    number: int


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int) else None


def read_event_log_holds(
    path: Path, *, held_only: bool = True
) -> tuple[dict[str, JobStatus], dict[str, Hold]]:
    """Read a job event log into every job's status and the hold of each held job.

    Parameters
    ----------
    path : `pathlib.Path`
        The user job event log.
    held_only : `bool`
        Only the holds of jobs still HELD; False: also the hold a job was in when it
        left the queue (removed while held; a release ends a hold).

    Returns
    -------
    statuses : `dict` [`str`, `JobStatus`]
        As :func:`read_event_log`.
    holds : `dict` [`str`, `Hold`]
        The jobs whose status is HELD, with their ``HoldReasonCode``,
        ``HoldReasonSubCode`` and ``HoldReason`` (one line).
    """
    path = Path(path)
    statuses: dict[str, JobStatus] = {}
    holds: dict[str, Hold] = {}
    numbers: dict[str, int] = {}
    if not path.exists():
        return statuses, holds
    log = htcondor2.JobEventLog(str(path))
    try:
        for event in log.events(stop_after=0):
            key = f"{event.cluster}.{event.proc}"
            statuses[key] = _apply(event, statuses.get(key))
            if event.type == htcondor2.JobEventType.JOB_HELD:
                numbers[key] = numbers.get(key, 0) + 1
                holds[key] = Hold(
                    _int(event.get("HoldReasonCode")),
                    _int(event.get("HoldReasonSubCode")),
                    " ".join(str(event.get("HoldReason", "held")).split()),
                    numbers[key],
                )
            elif event.type == htcondor2.JobEventType.JOB_RELEASED:
                holds.pop(key, None)
    finally:
        log.close()
    if not held_only:
        return statuses, holds
    held = {k: h for k, h in holds.items() if statuses[k].state is JobState.HELD}
    return statuses, held


def read_event_log(path: Path) -> dict[str, JobStatus]:
    """Read a job event log into the current status of every job in it.

    Parameters
    ----------
    path : `pathlib.Path`
        The user job event log (the submit description's ``log``).

    Returns
    -------
    statuses : `dict` [`str`, `JobStatus`]
        Keyed by ``"<cluster>.<proc>"``; empty if the log does not exist yet.
    """
    return read_event_log_holds(path)[0]
