"""The worker's exit status: 0 once the job's records are written, whatever its quanta did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rc2_platform.execution.execution_config import RetryPolicy
from rc2_platform.execution.job import JobResult
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
    # end. DAGMan's RETRY (non-zero exits) therefore never reruns a job for them.
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
