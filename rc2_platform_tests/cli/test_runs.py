"""``rc2 runs REPO`` and ``rc2 report REPO`` without a RUN, on real stand-in runs."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from rc2_platform.cli import main
from rc2_platform.execution import run_list
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.runner import RunOptions, run_graph
from rc2_platform_tests.execution.helpers import RUN, make_config, make_graph, make_repo


@pytest.fixture(scope="module")
def repo_with_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with RUN executed (all succeeded); a test adds an interrupted one."""
    root = tmp_path_factory.mktemp("runs")
    repo = root / "repo"
    butler, raws = make_repo(repo)
    butler.close()
    make_graph(root / "ok.qgraph", raws)
    run_graph(root / "ok.qgraph", repo, config=make_config(), options=RunOptions())
    return repo


def test_runs_lists_state_counts_start_and_end(repo_with_runs: Path) -> None:
    result = CliRunner().invoke(main, ["runs", str(repo_with_runs), "--json"])
    assert result.exit_code == 0, result.output
    row = next(r for r in json.loads(result.stdout) if r["run"] == RUN)
    assert row["status"] == "succeeded"
    assert row["quanta"] == row["succeeded"] == 7 and row["failed"] == row["pending"] == 0
    assert row["started"] <= row["ended"] and row["started"].endswith("Z")
    table = CliRunner().invoke(main, ["runs", str(repo_with_runs)])
    assert RUN in table.stdout and "succeeded" in table.stdout


def test_a_run_whose_orchestrator_died_is_interrupted(repo_with_runs: Path, tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    journal = Journal.for_run(repo_with_runs, "u/test/crashed")
    journal.directory.mkdir(parents=True)
    journal.append("run_started", run="u/test/crashed", graph="g", repo=str(repo_with_runs),
                   backend="local", processes=1, resume=False, pid=dead.pid,
                   host=socket.gethostname(), n_quanta=5, tasks={"a": 5}, clusters=5)  # fmt: skip
    runs = {r.run: r for r in run_list.list_runs(repo_with_runs)}
    crashed = runs["u/test/crashed"]
    assert crashed.status == "interrupted" and crashed.ended is None
    assert crashed.to_row()["pending"] == 5
    assert run_list.newest_run(repo_with_runs).run == "u/test/crashed"  # type: ignore[union-attr]


def test_report_without_a_run_reports_the_newest(repo_with_runs: Path) -> None:
    result = CliRunner().invoke(main, ["report", str(repo_with_runs), "--json"])
    assert result.exit_code == 0, result.output
    newest = run_list.newest_run(repo_with_runs)
    assert newest is not None
    assert json.loads(result.stdout)["run"] == newest.run
    assert f"report of the newest RUN, {newest.run}" in result.stderr


def test_report_without_runs_says_how_to_start_one(tmp_path: Path) -> None:
    butler, _ = make_repo(tmp_path / "empty")
    butler.close()
    result = CliRunner().invoke(main, ["report", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "no RUN was executed" in result.stderr
    assert "rc2 run" in result.stderr
    missing = CliRunner().invoke(main, ["runs", str(tmp_path / "nothing")])
    assert missing.exit_code == 1 and "rc2 create" in missing.stderr
