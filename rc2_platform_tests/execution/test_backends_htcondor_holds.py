"""HTCondor jobs held for another reason than memory: failed and removed after a grace.

The holds are real job-held events (012) written by the local schedd double and read by
``htcondor2.JobEventLog``; the grace runs on an injected clock.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import htcondor2
import pytest
from click.testing import CliRunner

from rc2_platform.butler import Butler
from rc2_platform.cli import main
from rc2_platform.execution.backends import ClusterJob, JobState
from rc2_platform.execution.backends.htcondor import HTCondorBackend, LocalScheddDouble
from rc2_platform.execution.execution_config import HTCondorSettings, RetryPolicy
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.report import build_report
from rc2_platform.execution.runner import RunOptions, restart_run, run_graph
from rc2_platform_tests.execution.helpers import RUN, make_config, make_graph, make_repo

TRANSFER = (
    "Transfer output files failure at access point ap1.example.org while receiving files "
    "from the execution point slot1@ep7.example.org: FILETRANSFER:1:non-zero exit (1) from "
    "/usr/libexec/condor/curl_plugin. Error: Failed to write /data/out.fits: No such file "
    "or directory"
)


class Clock:
    """A settable monotonic clock; each call moves it on by ``tick`` seconds."""

    def __init__(self, tick: float = 0.0) -> None:
        self.now = 0.0
        self.tick = tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def _job(tmp_path: Path, name: str, code: str = "import time; time.sleep(60)") -> ClusterJob:
    return ClusterJob(
        name=name,
        command=[sys.executable, "-c", code],
        request_memory_mb=1024,
        request_cpus=1,
        working_dir=tmp_path,
        log_dir=tmp_path / "logs",
        max_retries=1,
    )


def _backend(schedd: LocalScheddDouble, clock: Clock, grace: float | None = 600) -> HTCondorBackend:
    settings = HTCondorSettings(hold_grace_seconds=grace)
    return HTCondorBackend(schedd, settings, RetryPolicy(), clock=clock)


def _wait_running(schedd: LocalScheddDouble, job_id: str, starts: int) -> None:
    deadline = time.monotonic() + 30
    while not (
        schedd.jobs[job_id].ad.eval("NumJobStarts") == starts and schedd.jobs[job_id].process
    ):
        assert time.monotonic() < deadline, "the double never started the job"
        time.sleep(0.02)


def test_transfer_failure_hold_fails_after_the_grace_and_removes_the_job(tmp_path: Path) -> None:
    schedd, clock = LocalScheddDouble(first_cluster=41), Clock()
    backend = _backend(schedd, clock)
    (handle,) = backend.submit([_job(tmp_path, "step1_HSC_2")])
    _wait_running(schedd, "41.0", 1)
    schedd.hold("41.0", TRANSFER, 12, 2)
    held = backend.status([handle])[handle.id]
    assert held.state is JobState.HELD and "HoldReasonCode 12" in (held.reason or "")
    clock.now = 599.0
    assert backend.status([handle])[handle.id].state is JobState.HELD
    clock.now = 600.0
    failed = backend.status([handle])[handle.id]
    assert failed.state is JobState.FAILED and not failed.retryable
    assert failed.reason == (
        f"cluster job step1_HSC_2 (HTCondor job 41.0) held for 600 s: {TRANSFER} "
        "(HoldReasonCode 12 [TransferOutputError], HoldReasonSubCode 2); job removed"
    )
    assert schedd.jobs["41.0"].ad.eval("JobStatus") == 3  # condor_rm'd
    events = list(htcondor2.JobEventLog(str(tmp_path / "logs" / "step1_HSC_2.log")).events(0))
    assert [int(e.type) for e in events] == [0, 1, 12, 9]
    assert events[-1]["Reason"].startswith("rc2 removed the held job: cluster job step1_HSC_2")
    assert backend.status([handle])[handle.id] == failed  # stays FAILED, not REMOVED
    assert failed.to_dict()["retryable"] is False
    # A restarted orchestrator reads the same failure from the event log.
    assert _backend(schedd, Clock()).status([handle])[handle.id] == failed


def test_a_job_released_within_the_grace_runs_on_and_a_new_hold_gets_a_new_grace(
    tmp_path: Path,
) -> None:
    schedd, clock = LocalScheddDouble(), Clock()
    backend = _backend(schedd, clock)
    code = "import pathlib, time; time.sleep(0.5); pathlib.Path('done').touch()"
    (handle,) = backend.submit([_job(tmp_path, "step2_HSC", "import time; time.sleep(60)")])
    _wait_running(schedd, handle.id, 1)
    iwd = "Error from slot1@ep7: cannot access initial working directory /scratch/rc2: Permission denied (errno 13)"  # fmt: skip
    schedd.hold(handle.id, iwd, 14, 13)
    assert backend.status([handle])[handle.id].state is JobState.HELD
    clock.now = 500.0
    schedd.act("release", [handle.id])  # the operator fixed the directory
    _wait_running(schedd, handle.id, 2)
    clock.now = 900.0
    assert backend.status([handle])[handle.id].state is JobState.RUNNING
    schedd.hold(handle.id, "via condor_hold (by user ops)", 1, 0)
    assert backend.status([handle])[handle.id].state is JobState.HELD  # held again at 900
    clock.now = 1499.0
    assert backend.status([handle])[handle.id].state is JobState.HELD
    clock.now = 1500.0
    failed = backend.status([handle])[handle.id]
    assert failed.state is JobState.FAILED
    assert "held for 600 s: via condor_hold (by user ops) (HoldReasonCode 1 [UserRequest]" in (
        failed.reason or ""
    )

    (tmp_path / "b").mkdir()
    (other,) = backend.submit([_job(tmp_path / "b", "step3_HSC", code)])
    _wait_running(schedd, other.id, 1)
    schedd.hold(other.id, "via condor_hold (by user ops)", 1, 0)
    schedd.act("release", [other.id])
    assert backend.wait([other], poll_seconds=0.02)[other.id].state is JobState.SUCCEEDED


@pytest.mark.parametrize(
    ("code", "subcode", "grace", "state"),
    [
        (34, 0, 0, JobState.HELD),  # HTCondor's memory hold: released or removed by policy
        (3, 34, 0, JobState.HELD),  # rc2's periodic_hold for memory
        (26, 34, 0, JobState.HELD),  # a system policy hold with rc2's memory subcode
        (16, 0, 0, JobState.HELD),  # input still spooling: the schedd releases it
        (3, 0, 0, JobState.FAILED),  # a site's periodic_hold: grace 0 fails at once
        (13, 2, 0, JobState.FAILED),  # input transfer failure
        (13, 2, None, JobState.HELD),  # null: wait forever (the old behaviour)
    ],
)
def test_which_holds_fail(
    tmp_path: Path, code: int, subcode: int, grace: float | None, state: JobState
) -> None:
    schedd, clock = LocalScheddDouble(), Clock()
    backend = _backend(schedd, clock, grace)
    (handle,) = backend.submit([_job(tmp_path, "held")])
    _wait_running(schedd, handle.id, 1)
    schedd.hold(handle.id, "some hold", code, subcode)
    assert backend.status([handle])[handle.id].state is state
    clock.now = 10.0**7
    assert backend.status([handle])[handle.id].state is state
    assert (schedd.jobs[handle.id].ad.eval("JobStatus") == 3) is (state is JobState.FAILED)


def test_memory_hold_release_is_unchanged_with_grace_zero(tmp_path: Path) -> None:
    schedd = LocalScheddDouble()
    backend = _backend(schedd, Clock(tick=1000.0), grace=0)
    (handle,) = backend.submit([_job(tmp_path, "greedy")])
    _wait_running(schedd, handle.id, 1)
    assert schedd.report_memory_usage(handle.id, 3000) == "released"
    _wait_running(schedd, handle.id, 2)
    assert backend.status([handle])[handle.id].state is JobState.RUNNING
    assert schedd.report_memory_usage(handle.id, 5000) == "removed"  # retries used up
    status = backend.status([handle])[handle.id]
    assert status.state is JobState.REMOVED and "PeriodicRemove" in (status.reason or "")


def test_run_with_a_cluster_held_for_good_ends_reports_it_and_restarts(tmp_path: Path) -> None:
    butler, raws = make_repo(tmp_path / "repo")
    butler.close()
    make_graph(tmp_path / "g.qgraph", raws)
    config = make_config(retries=1)
    why = "Transfer input files failure at access point ap1: /data/repo/_runs: No such file or directory"  # fmt: skip
    schedd = LocalScheddDouble(hold_on_start={"step2_HSC": (13, 2, why)})
    clock = Clock(tick=60.0)  # each look at a held job is a minute later
    backend = HTCondorBackend(schedd, config.backends.htcondor, config.retry, clock=clock)
    options = RunOptions(poll_seconds=0.01)
    summary = run_graph(
        tmp_path / "g.qgraph", tmp_path / "repo", config=config, options=options, backend=backend
    )
    assert summary.status == "failed"  # it ended instead of waiting forever
    assert summary.counts["succeeded"] == 6 and summary.counts["failed"] == 1
    report = build_report(tmp_path / "repo", RUN)
    assert report.tasks["c"]["failed"] == 1 and report.tasks["c"]["retried"] == 0
    (error,) = report.errors
    assert "cluster job step2_HSC (HTCondor job" in error["message"]
    assert f"held for 600 s: {why} (HoldReasonCode 13 [TransferInputError]" in error["message"]
    assert error["message"].endswith("; job removed)")  # job died before recording (…)
    out = CliRunner().invoke(main, ["report", str(tmp_path / "repo"), RUN])
    assert out.exit_code == 0 and "HoldReasonCode 13 [TransferInputError]" in out.output
    (held,) = [j for j in schedd.jobs.values() if j.ad.eval("rc2_cluster") == "step2_HSC"]
    assert held.ad.eval("JobStatus") == 3  # removed from the queue
    assert not list(Journal.for_run(tmp_path / "repo", RUN).events("retry_scheduled"))

    schedd.hold_on_start.clear()  # the operator fixed the transfer
    backend = HTCondorBackend(schedd, config.backends.htcondor, config.retry, clock=clock)
    summary = restart_run(tmp_path / "repo", RUN, backend=backend, options=options)
    assert summary.status == "succeeded"
    with Butler(tmp_path / "repo") as butler:
        assert len(butler.query_datasets("c_out", collections=RUN)) == 1
