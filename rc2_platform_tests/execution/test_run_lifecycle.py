"""A RUN's lifecycle: one orchestrator at a time, no silent merge into a RUN holding
outputs, removal takes the run state along, a killed orchestrator is reported as such
and a resume takes over from it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from rc2_platform.butler import Butler
from rc2_platform.cli import main
from rc2_platform.execution.journal import Journal, run_directory
from rc2_platform.execution.provenance_table import PROVENANCE_DATASET_TYPE
from rc2_platform.execution.report import build_report
from rc2_platform.execution.run_lock import LockHolder, RunLock, read_holder
from rc2_platform_tests.execution.helpers import RUN, make_config, make_graph, make_repo


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    butler, raws = make_repo(tmp_path / "repo")
    butler.close()
    make_graph(tmp_path / "g.qgraph", raws, configs={"a": {"sleep_seconds": 0.5}})
    config = tmp_path / "exec.yaml"
    import yaml

    config.write_text(yaml.safe_dump(make_config().model_dump(mode="json")))
    return tmp_path, config


def _run(tmp: Path, config: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        ["run", str(tmp / "repo"), str(tmp / "g.qgraph"), "--execution-config", str(config),
         *extra],
    )  # fmt: skip
    return result.exit_code, result.output


def test_a_run_holding_outputs_needs_resume_or_extend_run(setup: tuple[Path, Path]) -> None:
    tmp, config = setup
    assert _run(tmp, config)[0] == 0
    code, out = _run(tmp, config)
    assert code == 1
    assert f"RUN '{RUN}' already holds" in out and "--resume" in out and "--extend-run" in out
    assert "Traceback" not in out
    assert _run(tmp, config, "--resume")[0] == 0
    assert _run(tmp, config, "--extend-run")[0] == 0


def test_a_second_orchestrator_is_refused_naming_the_holder(setup: tuple[Path, Path]) -> None:
    tmp, config = setup
    directory = run_directory(tmp / "repo", RUN)
    lock, _ = RunLock.acquire(directory, RUN, command="rc2 run (the other one)")
    try:
        code, out = _run(tmp, config)
        assert code == 1
        assert f"pid {os.getpid()}" in out and "the other one" in out and "rc2 cancel" in out
        with Butler(tmp / "repo") as butler:
            assert RUN not in set(butler.registry.query_collections())  # nothing written
            with pytest.raises(Exception, match="is being executed"):
                butler.registry.register_run(RUN)
                butler.remove_collection(RUN)
    finally:
        lock.release()
    assert _run(tmp, config)[0] == 0
    assert read_holder(directory) is None  # released at the end


def test_workflow_holder_needs_takeover_and_dead_holder_is_taken_over(
    setup: tuple[Path, Path],
) -> None:
    tmp, config = setup
    directory = run_directory(tmp / "repo", RUN)
    directory.mkdir(parents=True)
    now = time.time()
    dagman = LockHolder("h", None, "DAGMan workflow", "dagman:x", now, now)
    (directory / "lock").write_text(json.dumps(vars(dagman)))
    code, out = _run(tmp, config)
    assert code == 1 and "dagman:x" in out and "--takeover" in out
    assert _run(tmp, config, "--takeover")[0] == 0
    journal = Journal.for_run(tmp / "repo", RUN)
    assert journal.last("lock_taken_over")["previous"]["owner"] == "dagman:x"  # type: ignore[index]

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    import socket

    ghost = LockHolder(socket.gethostname(), int(dead.stdout), "rc2 run (crashed)", None, now, now)
    (directory / "lock").write_text(json.dumps(vars(ghost)))
    assert _run(tmp, config, "--resume")[0] == 0  # a dead pid of this host: taken over
    assert journal.last("lock_taken_over")["previous"]["command"] == "rc2 run (crashed)"  # type: ignore[index]


def test_removing_a_run_removes_its_run_state_and_provenance(setup: tuple[Path, Path]) -> None:
    tmp, config = setup
    assert _run(tmp, config)[0] == 0
    directory = run_directory(tmp / "repo", RUN)
    assert (directory / "journal.jsonl").exists()
    with Butler(tmp / "repo") as butler:
        assert butler.query_datasets(PROVENANCE_DATASET_TYPE, collections=RUN)
    result = CliRunner().invoke(main, ["collections", "remove", str(tmp / "repo"), RUN])
    assert result.exit_code == 0, result.output
    assert not directory.exists()
    report = CliRunner().invoke(main, ["report", str(tmp / "repo"), RUN])
    assert report.exit_code == 1 and "no execution journal" in report.output
    # A new run of the same name starts afresh: nothing merged, nothing "retried".
    assert _run(tmp, config)[0] == 0
    rep = build_report(tmp / "repo", RUN)
    assert sum(t["retried"] for t in rep.tasks.values()) == 0
    assert sum(t["succeeded"] for t in rep.tasks.values()) == 7


def test_killed_orchestrator_is_reported_interrupted_and_resume_takes_over(
    setup: tuple[Path, Path],
) -> None:
    tmp, config = setup
    rc2 = Path(sys.executable).parent / "rc2"
    proc = subprocess.Popen(
        [str(rc2), "run", str(tmp / "repo"), str(tmp / "g.qgraph"), "--execution-config",
         str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    journal = Journal.for_run(tmp / "repo", RUN)
    deadline = time.monotonic() + 120
    while journal.last("job_submitted") is None:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    running = build_report(tmp / "repo", RUN)
    assert running.status == "running" and "alive" in running.orchestrator
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    dead = build_report(tmp / "repo", RUN)
    assert dead.status == "interrupted" and "dead" in dead.orchestrator
    time.sleep(2.0)  # the killed orchestrator's jobs finish on their own
    code, out = _run(tmp, config, "--resume")
    assert code == 0, out
    final = build_report(tmp / "repo", RUN)
    assert final.status == "succeeded"
    assert sum(t["succeeded"] for t in final.tasks.values()) == 7
    assert final.workflow_wall_seconds >= final.job_wall_seconds / 2 > 0
