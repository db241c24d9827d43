"""HTCondor backend: submit descriptions re-read by htcondor2, policy expressions evaluated
with classad2, event logs read by htcondor2.JobEventLog, and jobs run by the local schedd double."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import classad2
import htcondor2
import pytest

from rc2_platform.execution.backends import ClusterJob, JobState
from rc2_platform.execution.backends.htcondor import (
    EventLogWriter,
    HTCondorBackend,
    LocalScheddDouble,
    build_submit_description,
    read_event_log,
)
from rc2_platform.execution.backends.htcondor.submit import split_arguments, split_environment
from rc2_platform.execution.execution_config import HTCondorSettings, RetryPolicy

RETRY = RetryPolicy(memory_multiplier=2.0, max_memory_mb=10000)


def _job(
    tmp_path: Path, name: str = "step1-visit-1228", code: str = "pass", **kw: object
) -> ClusterJob:
    return ClusterJob(
        name=name,
        command=[sys.executable, "-c", code, "arg with space", "it's"],
        request_memory_mb=2048,
        request_cpus=2,
        env={"RC2_REPO": "/data/repo 1"},
        labels={"step": "step1", "tract": "9615"},
        working_dir=tmp_path,
        log_dir=tmp_path / "logs",
        **kw,  # type: ignore[arg-type]
    )


def test_submit_description_round_trips_through_htcondor_submit(tmp_path: Path) -> None:
    settings = HTCondorSettings(requirements='(OpSys == "LINUX")', accounting_group="group_rc2")
    text = str(build_submit_description(_job(tmp_path, max_retries=2), settings, RETRY))
    reread = htcondor2.Submit(text)
    assert reread["request_cpus"] == "2"
    assert reread["request_memory"].startswith("int(min(")
    assert reread["universe"] == "vanilla"
    assert reread["My.rc2_cluster"] == '"step1-visit-1228"'
    assert reread["My.rc2_tract"] == '"9615"'
    assert reread["accounting_group"] == "group_rc2"
    assert reread["requirements"] == '(OpSys == "LINUX")'
    assert reread["max_retries"] == "2"
    assert reread["log"] == str(tmp_path / "logs" / "step1-visit-1228.log")
    assert split_arguments(reread["arguments"])[-2:] == ["arg with space", "it's"]
    assert split_environment(reread["environment"]) == {"RC2_REPO": "/data/repo 1"}


def _job_ad(job: ClusterJob, **attrs: object) -> classad2.ClassAd:
    desc = build_submit_description(job, None, RETRY)
    ad = classad2.ClassAd(dict(attrs))
    for key, attr in (
        ("request_memory", "RequestMemory"),
        ("periodic_hold", "PeriodicHold"),
        ("periodic_release", "PeriodicRelease"),
        ("periodic_remove", "PeriodicRemove"),
    ):
        ad[attr] = classad2.ExprTree(desc[key])
    return ad


@pytest.mark.parametrize(
    ("starts", "usage", "expected"),
    [
        (0, None, 2048),  # first match: the base request
        (1, None, 4096),  # one start behind it: base * 2
        (2, None, 8192),  # two starts: base * 4
        (1, 5000, 6000),  # measured usage * 1.2 beats base * 2
        (1, 1000, 4096),  # small usage does not lower the escalation
        (3, None, 10000),  # 2048 * 8 = 16384 is capped at max_memory_mb
    ],
)
def test_request_memory_escalates_per_retry_state(
    tmp_path: Path, starts: int, usage: int | None, expected: int
) -> None:
    attrs: dict[str, object] = {"NumJobStarts": starts}
    if usage is not None:
        attrs["MemoryUsage"] = usage
    assert _job_ad(_job(tmp_path), **attrs).eval("RequestMemory") == expected


def test_periodic_hold_fires_only_above_provisioned_memory(tmp_path: Path) -> None:
    job = _job(tmp_path)
    running = {"JobStatus": 2, "NumJobStarts": 1, "MemoryProvisioned": 2048}
    assert _job_ad(job, **running, MemoryUsage=3000).eval("PeriodicHold") is True
    assert _job_ad(job, **running, MemoryUsage=1000).eval("PeriodicHold") is False
    assert _job_ad(job, **running).eval("PeriodicHold") is False  # no usage reported yet
    idle = {**running, "JobStatus": 1}
    assert _job_ad(job, **idle, MemoryUsage=3000).eval("PeriodicHold") is False


@pytest.mark.parametrize(
    ("code", "subcode", "starts", "release", "remove"),
    [
        (34, 0, 1, True, False),  # HTCondor's own memory-exceeded hold, retries left
        (3, 34, 2, True, False),  # our periodic_hold, last retry left (max_retries = 2)
        (26, 34, 1, True, False),  # system policy hold with our subcode
        (3, 34, 3, False, True),  # retries used up: removed instead of staying held
        (1, 0, 1, False, False),  # held by a user: left alone
        (3, 0, 1, False, False),  # another job policy hold: left alone
    ],
)
def test_release_and_remove_policies_per_hold_state(
    tmp_path: Path, code: int, subcode: int, starts: int, release: bool, remove: bool
) -> None:
    ad = _job_ad(
        _job(tmp_path, max_retries=2),
        JobStatus=5,
        HoldReasonCode=code,
        HoldReasonSubCode=subcode,
        NumJobStarts=starts,
    )
    assert ad.eval("PeriodicRelease") is release
    assert ad.eval("PeriodicRemove") is remove


def test_event_log_writer_output_is_read_by_job_event_log(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    writer = EventLogWriter(log)
    writer.submitted(7, 0, dag_node="a")
    writer.submitted(7, 1)
    writer.submitted(7, 2)
    writer.executing(7, 0)
    writer.held(7, 0, "memory", 34, 0)
    writer.released(7, 0, "policy")
    writer.executing(7, 0)
    writer.terminated(7, 0, 0)
    writer.executing(7, 1)
    writer.terminated(7, 1, -9)
    writer.aborted(7, 2, "removed by rc2 cancel")
    events = list(htcondor2.JobEventLog(str(log)).events(stop_after=0))
    assert [int(e.type) for e in events] == [0, 0, 0, 1, 12, 13, 1, 5, 1, 5, 9]
    assert events[0]["LogNotes"] == "DAG Node: a"
    assert events[4]["HoldReasonCode"] == 34
    statuses = read_event_log(log)
    assert statuses["7.0"].state is JobState.SUCCEEDED and statuses["7.0"].attempts == 2
    assert (
        statuses["7.1"].state is JobState.FAILED and statuses["7.1"].reason == "killed by signal 9"
    )
    assert statuses["7.2"].state is JobState.REMOVED


def test_backend_runs_jobs_through_local_schedd_double(tmp_path: Path) -> None:
    backend = HTCondorBackend(LocalScheddDouble(), retry=RETRY)
    ok = _job(tmp_path, "ok", "import os, sys; print(os.environ['RC2_REPO'], sys.argv[1:])")
    bad = _job(tmp_path, "bad", "raise SystemExit(4)")
    handles = backend.submit([ok, bad])
    assert [h.id for h in handles] == ["1.0", "2.0"]
    statuses = backend.wait(handles, poll_seconds=0.05)
    assert statuses["1.0"].state is JobState.SUCCEEDED and statuses["1.0"].exit_code == 0
    assert statuses["2.0"].state is JobState.FAILED and statuses["2.0"].exit_code == 4
    out = (tmp_path / "logs" / "ok.out").read_text()
    assert "/data/repo 1 ['arg with space', \"it's\"]" in out
    assert htcondor2.Submit((tmp_path / "logs" / "ok.sub").read_text())["request_cpus"] == "2"


def _wait_running(schedd: LocalScheddDouble, job_id: str, starts: int) -> None:
    while not (
        schedd.jobs[job_id].ad.eval("NumJobStarts") == starts and schedd.jobs[job_id].process
    ):
        time.sleep(0.02)


def test_memory_killed_job_is_released_with_more_memory_then_removed(tmp_path: Path) -> None:
    schedd = LocalScheddDouble()
    backend = HTCondorBackend(schedd, retry=RETRY)
    (handle,) = backend.submit(
        [_job(tmp_path, "greedy", "import time; time.sleep(60)", max_retries=1)]
    )
    _wait_running(schedd, handle.id, 1)
    assert schedd.report_memory_usage(handle.id, 1500) == "running"  # below the request
    assert schedd.report_memory_usage(handle.id, 3000) == "released"
    _wait_running(schedd, handle.id, 2)
    assert backend.status([handle])[handle.id].state is JobState.RUNNING
    assert schedd.report_memory_usage(handle.id, 5000) == "removed"  # retries used up
    status = backend.status([handle])[handle.id]
    assert status.state is JobState.REMOVED and "PeriodicRemove" in (status.reason or "")
    assert status.memory_exceeded and status.attempts == 2  # a retry escalates from here
    assert schedd.jobs[handle.id].memory_history == [2048, 4096]
    log = str(tmp_path / "logs" / "greedy.log")
    codes = [int(e.type) for e in htcondor2.JobEventLog(log).events(stop_after=0)]
    assert codes == [0, 1, 12, 13, 1, 12, 9]


def test_cancel_removes_running_jobs(tmp_path: Path) -> None:
    schedd = LocalScheddDouble(first_cluster=100)
    backend = HTCondorBackend(schedd)
    (handle,) = backend.submit([_job(tmp_path, "sleepy", "import time; time.sleep(60)")])
    _wait_running(schedd, handle.id, 1)
    backend.cancel([handle])
    status = backend.status([handle])[handle.id]
    assert status.state is JobState.REMOVED and status.reason == "removed by rc2 cancel"
    assert not status.memory_exceeded
    assert schedd.query("JobStatus == 3")[0].eval("rc2_cluster") == "sleepy"
