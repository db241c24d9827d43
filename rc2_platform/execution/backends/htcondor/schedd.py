"""The schedd behind a small interface: the real one (``htcondor2.Schedd``) and a local double.

:class:`ScheddClient` is all :class:`~.backend.HTCondorBackend` needs: submit a
description, query job ads, act on jobs. :class:`HTCondorSchedd` wraps the official
bindings. :class:`LocalScheddDouble` is for machines without HTCondor daemons (CI, a
laptop): it really runs each submitted command as a subprocess and writes real job event
log lines (000, 001, 005, 009, 012, 013), and it applies the job's own
``periodic_hold`` / ``periodic_release`` / ``periodic_remove`` / ``request_memory``
expressions with ``classad2`` when told a job's memory usage.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import classad2
import htcondor2

from rc2_platform.errors import BackendError

from .event_log import EventLogWriter
from .submit import split_arguments, split_environment

__all__ = ["HTCondorSchedd", "LocalScheddDouble", "ScheddClient"]

# JobStatus codes of HTCondor job ads.
IDLE, RUNNING, REMOVED, COMPLETED, HELD = 1, 2, 3, 4, 5


class ScheddClient(Protocol):
    """What the HTCondor backend needs from a schedd."""

    def submit(self, description: htcondor2.Submit, count: int = 1) -> int:
        """Queue ``count`` jobs of ``description``; return the new cluster id."""
        ...

    def query(self, constraint: str = "true", projection: Sequence[str] = ()) -> list[Any]:
        """Return the job ads matching ``constraint``."""
        ...

    def act(self, action: str, job_ids: Sequence[str], reason: str | None = None) -> None:
        """Apply ``action`` (``"remove"``, ``"hold"``, ``"release"``) to ``"cluster.proc"`` ids."""
        ...


class HTCondorSchedd:
    """A :class:`ScheddClient` talking to a real schedd through ``htcondor2``.

    Parameters
    ----------
    schedd_name : `str`, optional
        Name of the schedd to locate through the collector; the local one if omitted.
    collector : `str`, optional
        Collector host (``$(COLLECTOR_HOST)`` of the local configuration if omitted).
    """

    _ACTIONS = {"remove": "Remove", "hold": "Hold", "release": "Release"}

    def __init__(self, schedd_name: str | None = None, collector: str | None = None) -> None:
        self.schedd_name = schedd_name
        self.collector = collector
        self._schedd: htcondor2.Schedd | None = None

    def _get(self) -> htcondor2.Schedd:
        if self._schedd is None:
            try:
                if self.schedd_name:
                    ad = htcondor2.Collector(self.collector).locate(
                        htcondor2.DaemonType.Schedd, self.schedd_name
                    )
                    self._schedd = htcondor2.Schedd(ad)
                else:
                    self._schedd = htcondor2.Schedd()
            except htcondor2.HTCondorException as exc:
                raise BackendError(
                    f"Cannot reach HTCondor schedd {self.schedd_name or '(local)'}: {exc}; "
                    "run on an access point or set backends.htcondor.schedd_name."
                ) from None
        return self._schedd

    def submit(self, description: htcondor2.Submit, count: int = 1) -> int:
        """Submit through ``Schedd.submit``; return the cluster id."""
        try:
            return int(self._get().submit(description, count=count).cluster())
        except htcondor2.HTCondorException as exc:
            raise BackendError(f"HTCondor refused the submission: {exc}") from None

    def query(self, constraint: str = "true", projection: Sequence[str] = ()) -> list[Any]:
        """Query job ads through ``Schedd.query``."""
        return list(self._get().query(constraint=constraint, projection=list(projection)))

    def act(self, action: str, job_ids: Sequence[str], reason: str | None = None) -> None:
        """Apply a ``htcondor2.JobAction`` to jobs."""
        if action not in self._ACTIONS:
            raise BackendError(
                f"Unknown schedd action {action!r}; use one of {sorted(self._ACTIONS)}."
            )
        job_action = getattr(htcondor2.JobAction, self._ACTIONS[action])
        self._get().act(job_action, list(job_ids), reason)


@dataclass
class _SimJob:
    job_id: str
    cluster: int
    proc: int
    ad: classad2.ClassAd
    command: list[str]
    env: dict[str, str]
    cwd: Path
    stdout: Path
    stderr: Path
    log: EventLogWriter
    process: subprocess.Popen[bytes] | None = None
    thread: threading.Thread | None = None
    interrupted: bool = False
    memory_history: list[int] = field(default_factory=list)


def _set_status(job: _SimJob, status: int) -> None:
    """Change a job's ``JobStatus`` and, as the schedd does, its ``EnteredCurrentStatus``."""
    job.ad["JobStatus"] = status
    job.ad["EnteredCurrentStatus"] = int(time.time())


def _expanded(desc: htcondor2.Submit, key: str) -> str:
    """A submit command's value with its macros expanded ("" if it is not set)."""
    return desc.expand(key) if desc.get(key) else ""


class LocalScheddDouble:
    """A schedd stand-in that runs jobs locally and writes real job event logs.

    Not a scheduler: every job starts at once (no slots, no matchmaking). Exit-code
    retries (``max_retries``) are not simulated; memory holds are, through
    :meth:`report_memory_usage`, and other holds through :meth:`hold` and
    ``hold_on_start``. As ``condor_submit`` does, the job's arguments,
    environment and DAG node name are read with their ``$(macro)`` references expanded
    (e.g. the macros a DAG's ``VARS`` give its node: set them on the description).

    Parameters
    ----------
    first_cluster : `int`
        The first cluster id.
    hold_on_start : `~collections.abc.Mapping` [`str`, `tuple` [`int`, `int`, `str`]]
        Cluster job name (the job ad's ``rc2_cluster``) -> ``(HoldReasonCode,
        HoldReasonSubCode, HoldReason)``: such a job is held each time it would start,
        as one whose input files cannot be transferred is.
    """

    def __init__(
        self,
        first_cluster: int = 1,
        hold_on_start: Mapping[str, tuple[int, int, str]] | None = None,
    ) -> None:
        self._ids = itertools.count(first_cluster)
        self._lock = threading.RLock()
        self.jobs: dict[str, _SimJob] = {}
        self.hold_on_start = dict(hold_on_start or {})

    # -- ScheddClient ------------------------------------------------------------------

    def submit(self, description: htcondor2.Submit, count: int = 1) -> int:
        """Queue and immediately start ``count`` jobs; write event 000 for each."""
        cluster = next(self._ids)
        for proc in range(count):
            job = self._make_job(description, cluster, proc)
            with self._lock:
                self.jobs[job.job_id] = job
            node = _expanded(description, "My.rc2_dag_node").strip('"')
            job.log.submitted(cluster, proc, node or None)
            self._start(job)
        return cluster

    def query(self, constraint: str = "true", projection: Sequence[str] = ()) -> list[Any]:
        """Return the ads (``classad2.ClassAd``) for which ``constraint`` is true."""
        expr = classad2.ExprTree(constraint)
        with self._lock:
            ads = [job.ad for job in self.jobs.values()]
        return [ad for ad in ads if expr.eval(ad) is True]

    def act(self, action: str, job_ids: Sequence[str], reason: str | None = None) -> None:
        """``remove`` (event 009), ``hold`` (012, code 1) or ``release`` (013) jobs."""
        for job_id in job_ids:
            job = self.jobs[job_id]
            status = job.ad.eval("JobStatus")
            if action == "remove" and status not in (REMOVED, COMPLETED):
                self._interrupt(job)
                _set_status(job, REMOVED)
                job.log.aborted(job.cluster, job.proc, reason or "via condor_rm (by user rc2)")
            elif action == "hold" and status in (IDLE, RUNNING):
                self._hold(job, reason or "via condor_hold (by user rc2)", 1, 0)
            elif action == "release" and status == HELD:
                self._release(job, reason or "via condor_release (by user rc2)")
            elif action not in ("remove", "hold", "release"):
                raise BackendError(f"Unknown schedd action {action!r}.")

    # -- simulation controls -----------------------------------------------------------

    def report_memory_usage(self, job_id: str, memory_mb: int) -> str:
        """Set a running job's ``MemoryUsage`` and apply its periodic policy expressions.

        Returns what happened: ``"running"`` (no hold), ``"released"`` (held, then
        released and restarted), ``"removed"`` (held, then removed) or ``"held"``.
        """
        job = self.jobs[job_id]
        job.ad["MemoryUsage"] = memory_mb
        if job.ad.eval("PeriodicHold") is not True:
            return "running"
        reason = job.ad.eval("PeriodicHoldReason")
        subcode = job.ad.eval("PeriodicHoldSubCode")
        self._hold(job, str(reason), 3, int(subcode) if isinstance(subcode, int) else 0)
        return self._periodic_held(job)

    def hold(self, job_id: str, reason: str, code: int, subcode: int = 0) -> None:
        """Hold a job as HTCondor does for ``code`` (event 012), stopping it if it runs.

        E.g. ``12`` / ``13`` (a failed output / input file transfer, subcode the errno),
        ``14`` (the initial working directory cannot be read), ``26`` (a system policy).
        """
        self._hold(self.jobs[job_id], reason, code, subcode)

    def apply_periodic_policy(self) -> dict[str, str]:
        """Evaluate every held job's ``periodic_release`` / ``periodic_remove`` now, as the
        schedd does every ``PERIODIC_EXPR_INTERVAL``; return ``{job id: "released" |
        "removed" | "held"}`` for the jobs that were held."""
        with self._lock:
            held = [job for job in self.jobs.values() if job.ad.eval("JobStatus") == HELD]
        return {job.job_id: self._periodic_held(job) for job in held}

    def wait_all(self, timeout: float = 60.0) -> None:
        """Join every job thread, also those started while waiting (a release) (tests)."""
        joined: set[threading.Thread] = set()
        while True:
            threads = [job.thread for job in list(self.jobs.values()) if job.thread]
            todo = [t for t in threads if t.is_alive() and t not in joined]
            if not todo:
                return
            for thread in todo:
                thread.join(timeout)
                joined.add(thread)

    # -- internals ---------------------------------------------------------------------

    def _make_job(self, desc: htcondor2.Submit, cluster: int, proc: int) -> _SimJob:
        cwd = Path(desc.get("initialdir") or os.getcwd())

        def _path(key: str) -> Path:
            value = Path(desc.get(key) or os.devnull)
            return value if value.is_absolute() else cwd / value

        ad = classad2.ClassAd(
            {"ClusterId": cluster, "ProcId": proc, "JobStatus": IDLE, "NumJobStarts": 0,
             "EnteredCurrentStatus": int(time.time())}
        )  # fmt: skip
        ad["RequestCpus"] = int(desc.get("request_cpus") or 1)
        ad["RequestMemory"] = 128  # condor_submit's default when none is given
        for key, attr in (
            ("request_memory", "RequestMemory"),
            ("periodic_hold", "PeriodicHold"),
            ("periodic_hold_reason", "PeriodicHoldReason"),
            ("periodic_hold_subcode", "PeriodicHoldSubCode"),
            ("periodic_release", "PeriodicRelease"),
            ("periodic_remove", "PeriodicRemove"),
        ):
            if desc.get(key):
                ad[attr] = classad2.ExprTree(desc[key])
        for key in desc:
            if key.startswith(("My.", "+")):
                ad[key.split(".", 1)[1] if key.startswith("My.") else key[1:]] = classad2.ExprTree(
                    desc[key]
                )
        return _SimJob(
            job_id=f"{cluster}.{proc}",
            cluster=cluster,
            proc=proc,
            ad=ad,
            command=[desc["executable"], *split_arguments(_expanded(desc, "arguments"))],
            env=split_environment(_expanded(desc, "environment")),
            cwd=cwd,
            stdout=_path("output"),
            stderr=_path("error"),
            log=EventLogWriter(_path("log")),
        )

    def _start(self, job: _SimJob) -> None:
        job.interrupted = False
        job.process = None
        job.thread = threading.Thread(target=self._run, args=(job,), daemon=True)
        job.thread.start()

    def _run(self, job: _SimJob) -> None:
        try:
            self._run_once(job)
        except Exception as exc:  # never leave a job silently stuck in the double
            self._hold(job, f"rc2 local schedd double: {type(exc).__name__}: {exc}", 6, 0)

    def _run_once(self, job: _SimJob) -> None:
        with self._lock:
            cluster = job.ad.eval("rc2_cluster") if "rc2_cluster" in job.ad else None
            planned = self.hold_on_start.get(str(cluster))
            if planned is not None:
                code, subcode, reason = planned
                self._hold(job, reason, code, subcode)
                return
            # Matchmaking evaluates RequestMemory before the start is counted.
            provisioned = int(job.ad.eval("RequestMemory"))
            job.ad["NumJobStarts"] = int(job.ad.eval("NumJobStarts")) + 1
            job.memory_history.append(provisioned)
            job.ad["MemoryProvisioned"] = provisioned
            _set_status(job, RUNNING)
            job.log.executing(job.cluster, job.proc)
            try:
                with open(job.stdout, "ab") as out, open(job.stderr, "ab") as err:
                    job.process = subprocess.Popen(
                        job.command,
                        cwd=job.cwd,
                        env={**os.environ, **job.env},
                        stdout=out,
                        stderr=err,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
            except OSError as exc:
                # HTCondor would put the job on hold (code 6, subcode errno).
                self._hold(
                    job,
                    f"Error from starter: failed to execute {job.command[0]}: {exc}",
                    6,
                    exc.errno or 0,
                )
                return
            process = job.process
        code = process.wait()
        with self._lock:
            if job.interrupted or job.process is not process:  # held/removed, maybe restarted
                return
            _set_status(job, COMPLETED)
            job.ad["ExitCode"] = code
            job.log.terminated(job.cluster, job.proc, code)

    def _interrupt(self, job: _SimJob) -> None:
        with self._lock:
            job.interrupted = True
            process = job.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def _hold(self, job: _SimJob, reason: str, code: int, subcode: int) -> None:
        self._interrupt(job)
        with self._lock:
            _set_status(job, HELD)
            job.ad["HoldReason"] = reason
            job.ad["HoldReasonCode"] = code
            job.ad["HoldReasonSubCode"] = subcode
            job.log.held(job.cluster, job.proc, reason, code, subcode)

    def _release(self, job: _SimJob, reason: str) -> None:
        with self._lock:
            _set_status(job, IDLE)
            job.log.released(job.cluster, job.proc, reason)
        self._start(job)

    def _periodic_held(self, job: _SimJob) -> str:
        """What the schedd's periodic policy evaluation does with a held job."""
        if job.ad.eval("PeriodicRelease") is True:
            self._release(job, "The job attribute PeriodicRelease expression evaluated to TRUE")
            return "released"
        if job.ad.eval("PeriodicRemove") is True:
            with self._lock:
                _set_status(job, REMOVED)
                job.log.aborted(
                    job.cluster,
                    job.proc,
                    "The job attribute PeriodicRemove expression evaluated to TRUE",
                )
            return "removed"
        return "held"
