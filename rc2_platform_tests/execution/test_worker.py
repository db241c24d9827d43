"""The worker's exit status: 0 once the job's records are written, whatever its quanta did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rc2_platform.execution.execution_config import RetryPolicy
from rc2_platform.execution.job import JobResult, write_job_graph
from rc2_platform.execution.quantum_state import QuantumState
from rc2_platform.execution.worker import main
from rc2_platform_tests.execution.helpers import make_graph, make_repo

FAILURES: dict[str, dict[str, Any]] = {
    "clean": {},
    "every failure not retried": {"data_error_on": [{"detector": 0}, {"detector": 1}]},
    "mixed": {"data_error_on": [{"detector": 0}], "fail_on": [{"detector": 1}]},
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_worker_exits_0_once_records_are_written_whatever_the_failures(
    tmp_path: Path, case: str
) -> None:
    # Quantum failures are data: the exit status says only whether the job ran to its
    # end. In a DAG, the node's POST script (rc2 dagman-post) decides on retries.
    butler, raws = make_repo(tmp_path / "repo")
    butler.close()
    graph = make_graph(tmp_path / "g.qgraph", raws, configs={"a": FAILURES[case]})
    a_quanta = [q.index for q in graph.quanta if q.task_label == "a"]
    (tmp_path / "quanta.json").write_text(json.dumps(a_quanta))
    result = tmp_path / "quanta.jsonl"
    code = main(
        ["run-cluster", str(tmp_path / "g.qgraph"), "--cluster", "a", "--repo",
         str(tmp_path / "repo"), "--result", str(result), "--quanta-file",
         str(tmp_path / "quanta.json")]
    )  # fmt: skip
    assert code == 0
    outcomes = JobResult.read(result).outcomes
    failed = [o.error_type for o in outcomes if o.status is QuantumState.FAILED]
    expected = {
        "clean": [],
        "every failure not retried": ["TaskDataError", "TaskDataError"],
        "mixed": ["TaskDataError", "TaskError"],
    }[case]
    assert sorted(t or "" for t in failed) == expected
    retriable = [t for t in failed if RetryPolicy().retries_error(t)]
    assert retriable == (["TaskError"] if case == "mixed" else [])
    assert len(outcomes) == len(a_quanta)


def test_worker_exits_1_when_the_job_cannot_start(tmp_path: Path) -> None:
    butler, raws = make_repo(tmp_path / "repo")
    butler.close()
    make_graph(tmp_path / "g.qgraph", raws)
    code = main(
        ["run-cluster", str(tmp_path / "g.qgraph"), "--cluster", "nope", "--repo",
         str(tmp_path / "repo"), "--result", str(tmp_path / "r.jsonl")]
    )  # fmt: skip
    assert code == 1


def test_a_dag_retry_runs_the_prepared_attempt_or_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    butler, raws = make_repo(tmp_path / "repo")
    butler.close()
    graph = make_graph(tmp_path / "g.qgraph", raws)
    first = tmp_path / "jobs" / "a" / "attempt3"
    first.mkdir(parents=True)
    (tmp_path / "quanta.json").write_text(json.dumps([q.index for q in graph.quanta[:1]]))
    args = ["run-cluster", str(tmp_path / "g.qgraph"), "--cluster", "a", "--repo",
            str(tmp_path / "repo"), "--result", str(first / "quanta.jsonl"), "--attempt", "3",
            "--quanta-file", str(tmp_path / "quanta.json")]  # fmt: skip
    assert main([*args, "--dag-retry", "2"]) == 1  # nobody prepared attempt 5
    assert "no job graph" in capsys.readouterr().err
    assert not (tmp_path / "jobs" / "a" / "attempt5").exists()
    assert main([*args, "--dag-retry", "-1"]) == 2  # a usage error

    prepared = tmp_path / "jobs" / "a" / "attempt5"
    prepared.mkdir()
    write_job_graph(prepared / "job.qgraph", graph, [0], {}, "a")  # as the POST script does
    assert main([*args, "--dag-retry", "2"]) == 0
    assert "attempt 5" in capsys.readouterr().out
    assert not (first / "quanta.jsonl").exists()  # attempt 3's records are not touched
    (outcome,) = JobResult.read(prepared / "quanta.jsonl").outcomes
    assert outcome.status is QuantumState.SUCCEEDED
