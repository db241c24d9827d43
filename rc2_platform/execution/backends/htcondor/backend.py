"""The HTCondor backend: submit through a :class:`ScheddClient`, status from job event logs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import htcondor2

from rc2_platform.errors import BackendError, JobSubmissionError
from rc2_platform.execution.execution_config import HTCondorSettings, RetryPolicy

from ..base import Backend, ClusterJob, JobHandle, JobState, JobStatus
from .dagman import check_dependencies, write_dag
from .event_log import read_event_log
from .schedd import HTCondorSchedd, ScheddClient
from .submit import build_submit_description

__all__ = ["HTCondorBackend"]


class HTCondorBackend(Backend):
    """Run cluster jobs on an HTCondor pool.

    Parameters
    ----------
    schedd : `ScheddClient`, optional
        Where jobs go; an :class:`HTCondorSchedd` for ``settings.schedd_name`` if omitted
        (use :class:`LocalScheddDouble` where no HTCondor daemons run).
    settings : `HTCondorSettings`, optional
        Universe, requirements, accounting group, extra submit commands.
    retry : `RetryPolicy`, optional
        Memory multiplier and cap of the memory-escalating retry.
    """

    name: ClassVar[str] = "htcondor"

    def __init__(
        self,
        schedd: ScheddClient | None = None,
        settings: HTCondorSettings | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings or HTCondorSettings()
        self.retry = retry or RetryPolicy()
        self.schedd: ScheddClient = schedd or HTCondorSchedd(self.settings.schedd_name)

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
        """Read each job's event log (``htcondor2.JobEventLog``); no event yet = PENDING."""
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
            statuses = read_event_log(Path(log))
            for handle in group:
                result[handle.id] = statuses.get(handle.id, JobStatus(JobState.PENDING))
        return result

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
