"""The HTCondor backend: submit through a :class:`ScheddClient`, status from job event logs."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import htcondor2

from rc2_platform.errors import BackendError, JobSubmissionError
from rc2_platform.execution.execution_config import HTCondorSettings, RetryPolicy

from ..base import Backend, ClusterJob, JobHandle, JobState, JobStatus
from .dagman import check_dependencies, write_dag
from .event_log import Hold, read_event_log, read_event_log_holds
from .holds import REMOVED_HELD_PREFIX, HoldWatch, held_line, is_memory_hold
from .schedd import HTCondorSchedd, ScheddClient
from .submit import build_submit_description

__all__ = ["HTCondorBackend"]

_log = logging.getLogger(__name__)


class HTCondorBackend(Backend):
    """Run cluster jobs on an HTCondor pool.

    Parameters
    ----------
    schedd : `ScheddClient`, optional
        Where jobs go; an :class:`HTCondorSchedd` for ``settings.schedd_name`` if omitted
        (use :class:`LocalScheddDouble` where no HTCondor daemons run).
    settings : `HTCondorSettings`, optional
        Universe, requirements, accounting group, extra submit commands, and how long a
        job held for another reason than memory may stay held (``hold_grace_seconds``).
    retry : `RetryPolicy`, optional
        Memory multiplier and cap of the memory-escalating retry.
    clock : callable, optional
        Seconds, monotonic (``time.monotonic``); the hold timers run on it.
    """

    name: ClassVar[str] = "htcondor"

    def __init__(
        self,
        schedd: ScheddClient | None = None,
        settings: HTCondorSettings | None = None,
        retry: RetryPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or HTCondorSettings()
        self.retry = retry or RetryPolicy()
        self.schedd: ScheddClient = schedd or HTCondorSchedd(self.settings.schedd_name)
        self._holds = HoldWatch(self.settings.hold_grace_seconds, clock)
        self._held_failed: dict[str, JobStatus] = {}  # job id -> FAILED (removed by us)

    def submit(self, jobs: Sequence[ClusterJob]) -> list[JobHandle]:
        """Write ``<log_dir>/<name>.sub`` for each job and submit it (one cluster per job)."""
        check_dependencies(jobs, {})
        handles = []
        for job in jobs:
            description = build_submit_description(job, self.settings, self.retry)
            job.log_dir.mkdir(parents=True, exist_ok=True)
            submit_file = job.log_dir / f"{job.name}.sub"
            submit_file.write_text(str(description))
            try:
                cluster = self.schedd.submit(description, 1)
            except BackendError as exc:
                raise JobSubmissionError(
                    f"Could not submit cluster job {job.name!r}: {exc}"
                ) from None
            handles.append(
                JobHandle(
                    id=f"{cluster}.0",
                    job_name=job.name,
                    backend=self.name,
                    info={"event_log": description["log"], "submit_file": str(submit_file)},
                )
            )
        return handles

    def status(self, handles: Sequence[JobHandle]) -> dict[str, JobStatus]:
        """Read each job's event log (``htcondor2.JobEventLog``); no event yet = PENDING.

        A job held for another reason than memory longer than ``hold_grace_seconds`` is
        removed (``condor_rm``) and FAILED, not retried (:mod:`.holds`). A job its
        ``periodic_remove`` removed while held for memory (its in-queue retries used up)
        is REMOVED with ``memory_exceeded`` (the run-state machine's retry escalates).
        """
        self._check_handles(handles)
        by_log: dict[str, list[JobHandle]] = defaultdict(list)
        for handle in handles:
            if "event_log" not in handle.info:
                raise BackendError(
                    f"HTCondor job handle {handle.id!r} has no event_log in its info."
                )
            by_log[handle.info["event_log"]].append(handle)
        result: dict[str, JobStatus] = {}
        for log, group in by_log.items():
            statuses, holds = read_event_log_holds(Path(log), held_only=False)
            for handle in group:
                status = statuses.get(handle.id, JobStatus(JobState.PENDING))
                hold = holds.get(handle.id)  # the hold it is in, or was removed in
                if handle.id in self._held_failed:
                    status = self._held_failed[handle.id]
                elif status.state is JobState.REMOVED and (status.reason or "").startswith(
                    REMOVED_HELD_PREFIX
                ):  # removed for its hold by an earlier orchestrator
                    reason = (status.reason or "").removeprefix(REMOVED_HELD_PREFIX)
                    status = JobStatus(
                        JobState.FAILED,
                        None,
                        reason + "; job removed",
                        status.attempts,
                        retryable=False,
                    )
                elif status.state is JobState.REMOVED and hold and is_memory_hold(hold):
                    # its periodic_remove: held for memory with its in-queue retries used
                    # up; the orchestrator's retry of its quanta asks for more memory.
                    status = dataclasses.replace(
                        status, memory_exceeded=True, escalated_in_queue=True
                    )
                elif status.state is JobState.HELD and hold is not None:
                    status = self._held_status(handle, status, hold)
                else:
                    self._holds.forget(handle.id)
                result[handle.id] = status
        return result

    def _held_status(self, handle: JobHandle, status: JobStatus, hold: Hold) -> JobStatus:
        """``status`` of a held job, or FAILED (the job removed) once its grace is over."""
        held_for = self._holds.overdue(handle.id, hold)
        if held_for is None:
            return status
        line = held_line(handle.job_name, handle.id, hold, held_for)
        try:
            self.schedd.act("remove", [handle.id], REMOVED_HELD_PREFIX + line)
            line += "; job removed"
        except Exception as exc:  # BackendError, htcondor2.HTCondorException, transport
            line += f"; removing it failed ({exc}): condor_rm {handle.id}"
        self._holds.forget(handle.id)
        failed = JobStatus(JobState.FAILED, None, line, status.attempts, retryable=False)
        self._held_failed[handle.id] = failed
        _log.warning("%s", line)
        return failed

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        """Remove the jobs from the queue (``condor_rm``)."""
        self._check_handles(handles)
        if handles:
            self.schedd.act("remove", [h.id for h in handles], "removed by rc2 cancel")

    def submit_dag(
        self,
        jobs: Sequence[ClusterJob],
        dependencies: Mapping[str, set[str]],
        dag_dir: Path,
        dag_name: str = "rc2",
        final: ClusterJob | None = None,
        *,
        post_scripts: Mapping[str, Sequence[str]] | None = None,
        retry_unless_exit: int | None = None,
    ) -> JobHandle:
        """Write a DAGMan workflow for ``jobs`` and submit it as one DAGMan job.

        ``final``, if given, becomes the DAG's ``FINAL`` node; ``post_scripts`` and
        ``retry_unless_exit`` as in :func:`write_dag`.

        Returns the handle of the DAGMan job itself (its ``info`` holds ``dag`` and the
        DAGMan ``event_log``); node states come from :meth:`dag_node_status`.

        Raises
        ------
        JobSubmissionError
            If the dependencies are invalid, or ``condor_dagman`` is not installed.
        """
        dag_path = write_dag(
            jobs, dependencies, dag_dir, self.settings, self.retry, dag_name, final,
            post_scripts=post_scripts, retry_unless_exit=retry_unless_exit,
        )  # fmt: skip
        try:
            description = htcondor2.Submit.from_dag(str(dag_path), {"force": True})
        except htcondor2.HTCondorException as exc:
            raise JobSubmissionError(
                f"Could not make a DAGMan submission from {dag_path}: {exc}; submit from an "
                "access point where HTCondor (condor_dagman) is installed."
            ) from None
        cluster = self.schedd.submit(description, 1)
        log = Path(description["log"])
        if not log.is_absolute():
            log = dag_path.parent / log
        return JobHandle(
            id=f"{cluster}.0",
            job_name=dag_name,
            backend=self.name,
            info={"event_log": str(log), "dag": str(dag_path)},
        )

    @staticmethod
    def dag_node_status(jobs: Sequence[ClusterJob]) -> dict[str, JobStatus]:
        """Status of each DAG node from its own event log (latest HTCondor cluster wins)."""
        result: dict[str, JobStatus] = {}
        for job in jobs:
            statuses = read_event_log(job.log_dir / f"{job.name}.log")
            if statuses:
                latest = max(statuses, key=lambda k: tuple(int(p) for p in k.split(".")))
                result[job.name] = statuses[latest]
            else:
                result[job.name] = JobStatus(JobState.PENDING)
        return result
