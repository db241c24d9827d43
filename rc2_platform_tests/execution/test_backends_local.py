"""The local backend runs real subprocesses: exit codes, logs, limits, retries, cancel."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from rc2_platform.errors import ConfigError, JobWaitTimeoutError, UnknownJobHandleError
from rc2_platform.execution.backends import ClusterJob, JobHandle, JobState, LocalBackend


def _job(tmp_path: Path, name: str, code: str, **kwargs: object) -> ClusterJob:
    return ClusterJob(
        name=name,
        command=[sys.executable, "-c", code],
        request_memory_mb=100,
        request_cpus=1,
        working_dir=tmp_path / "work",
        log_dir=tmp_path / "logs",
        **kwargs,  # type: ignore[arg-type]
    )


def test_exit_codes_map_to_states_and_logs_are_captured(tmp_path: Path) -> None:
    backend = LocalBackend(max_workers=2)
    ok = _job(
        tmp_path,
        "ok",
        "import os; print('hello', os.environ['RC2_X'], os.getcwd())",
        env={"RC2_X": "42"},
    )
    bad = _job(tmp_path, "bad", "import sys; sys.stderr.write('boom'); sys.exit(3)")
    handles = backend.submit([ok, bad])
    statuses = backend.wait(handles)
    assert statuses[handles[0].id].state is JobState.SUCCEEDED
    assert statuses[handles[1].id].state is JobState.FAILED
    assert statuses[handles[1].id].exit_code == 3
    out = (tmp_path / "logs" / "ok.out").read_text()
    assert f"hello 42 {tmp_path / 'work'}" in out
    assert (tmp_path / "logs" / "bad.err").read_text() == "boom"


def test_concurrency_limit_runs_one_job_at_a_time(tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    code = (
        "import sys, time; f = open(sys.argv[1], 'a'); f.write('start\\n'); f.flush(); "
        "time.sleep(0.2); f.write('end\\n'); f.close()"
    )
    jobs = [
        ClusterJob(
            f"j{i}",
            [sys.executable, "-c", code, str(trace)],
            100,
            1,
            working_dir=tmp_path,
            log_dir=tmp_path / "logs",
        )
        for i in range(3)
    ]
    backend = LocalBackend(max_workers=1)
    statuses = backend.wait(backend.submit(jobs))
    assert all(s.state is JobState.SUCCEEDED for s in statuses.values())
    assert trace.read_text().split() == ["start", "end"] * 3


def test_failed_job_is_retried_up_to_max_retries(tmp_path: Path) -> None:
    code = (
        "import pathlib, sys; p = pathlib.Path('marker'); "
        "sys.exit(0) if p.exists() else (p.touch(), sys.exit(5))"
    )
    backend = LocalBackend()
    retried = _job(tmp_path / "a", "flaky", code, max_retries=1)
    not_retried = _job(tmp_path / "b", "flaky", code)
    h1 = backend.submit([retried])[0]
    h2 = backend.submit([not_retried])[0]
    statuses = backend.wait([h1, h2])
    assert statuses[h1.id].state is JobState.SUCCEEDED and statuses[h1.id].attempts == 2
    assert statuses[h2.id].state is JobState.FAILED and statuses[h2.id].attempts == 1
    assert (tmp_path / "a" / "logs" / "flaky.out").read_text().count("attempt") == 2


def test_cancel_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(c.pid)); c.wait()"
    )
    backend = LocalBackend(max_workers=1, kill_grace_seconds=5)
    running, queued = backend.submit(
        [_job(tmp_path, "long", code), _job(tmp_path, "never", "pass")]
    )
    while not pid_file.exists() or not pid_file.read_text():
        time.sleep(0.02)
    child = int(pid_file.read_text())
    backend.cancel([running, queued])
    statuses = backend.status([running, queued])
    assert statuses[running.id].state is JobState.REMOVED
    assert statuses[queued.id].state is JobState.REMOVED
    for _ in range(200):  # the orphaned child is reaped by init; wait until it is gone
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)
    else:
        pytest.fail(f"child process {child} survived cancel")


def test_missing_executable_fails_with_reason(tmp_path: Path) -> None:
    job = ClusterJob(
        "nope", ["/nonexistent/rc2-binary"], 10, 1, working_dir=tmp_path, log_dir=tmp_path
    )
    backend = LocalBackend()
    status = backend.wait(backend.submit([job]))
    (only,) = status.values()
    assert only.state is JobState.FAILED and "could not start" in (only.reason or "")


def test_foreign_handles_and_timeouts_raise(tmp_path: Path) -> None:
    backend = LocalBackend()
    with pytest.raises(UnknownJobHandleError, match="htcondor"):
        backend.status([JobHandle("1.0", "x", "htcondor")])
    with pytest.raises(UnknownJobHandleError, match="not submitted by this backend"):
        backend.status([JobHandle("local-1-999999", "x", "local")])
    handle = backend.submit([_job(tmp_path, "slow", "import time; time.sleep(30)")])
    with pytest.raises(JobWaitTimeoutError, match="slow"):
        backend.wait(handle, timeout=0.1)
    backend.cancel(handle)
    assert backend.status(handle)[handle[0].id].state is JobState.REMOVED


def test_invalid_cluster_jobs_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="name"):
        ClusterJob("visit 1228", ["true"], 10, 1)
    with pytest.raises(ConfigError, match="request_memory_mb"):
        ClusterJob("v", ["true"], 0, 1)
    with pytest.raises(ConfigError, match="empty command"):
        ClusterJob("v", [], 10, 1)
    handle = JobHandle("1.0", "v", "htcondor", {"event_log": "/x.log"})
    assert JobHandle.from_dict(handle.to_dict()).info == {"event_log": "/x.log"}
