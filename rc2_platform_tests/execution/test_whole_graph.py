"""run_graphs: a prepared graph run whole with rc2 run's loop, each cluster reported once.

Real SQLite repository, real local backend (stand-in tasks in worker processes).
"""

from __future__ import annotations

from pathlib import Path

from rc2_platform.butler import Butler
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.run_state import QuantumState, RunStatus
from rc2_platform.execution.runner import RunOptions
from rc2_platform.execution.stages import ClusterOutcome, finish_run, prepare_run
from rc2_platform.execution.whole_graph import run_graphs
from rc2_platform_tests.execution.helpers import RUN, make_config, make_graph, make_repo


def _registered(repo: Path, dataset_type: str) -> set[int | str]:
    with Butler(repo) as butler:
        refs = butler.query_datasets(dataset_type, collections=RUN)
        return {r.data_id.get("detector", "all") for r in refs}


def test_failure_is_reported_with_its_cluster_and_rerun_skips_what_succeeded(
    tmp_path: Path,
) -> None:
    butler, raws = make_repo(tmp_path / "repo")
    butler.close()
    repo, graph_path = tmp_path / "repo", tmp_path / "g.qgraph"
    marker, counter = tmp_path / "broken", tmp_path / "counts"
    marker.touch()
    counter.mkdir()
    bad = {"fail_on": [{"detector": 1}], "only_while_exists": str(marker),
           "counter_dir": str(counter)}  # fmt: skip
    plain = {"counter_dir": str(counter)}
    graph = make_graph(graph_path, raws, configs={"a": bad, "b": plain, "c": plain})
    config = make_config(retries=1)
    options = RunOptions(jobs=2)
    ledger = prepare_run(repo, "T", str(graph_path), config, options=options)
    seen: list[ClusterOutcome] = []

    result = run_graphs([ledger], config, options=options, on_cluster=seen.append)

    assert result.status == {"T": RunStatus.FAILED}
    assert seen == result.outcomes
    # Every cluster reported once: the three detector clusters that ran, and c's cluster
    # (blocked behind detector 1) without a job.
    assert sorted(o.cluster for o in seen) == sorted({o.cluster for o in seen})
    assert len(seen) == 4
    (failed,) = result.failed
    assert failed.attempts == 2  # the retry policy's second attempt failed too
    (failure,) = failed.failures
    assert failure["task"] == "a" and failure["data_id"] == {"instrument": "HSC", "detector": 1}
    assert "told to fail" in failure["error"] and failure["attempt"] == 2
    assert failed.counts() == {"failed": 1, "blocked": 1}
    (blocked,) = [o for o in seen if o.attempts == 0]
    assert blocked.counts() == {"blocked": 1}
    assert _registered(repo, "b_out") == {0, 2}
    # The ledger holds every quantum's final state.
    assert len(ledger.states) == len(graph)
    assert ledger.counts()[QuantumState.SUCCEEDED.value] == 4
    finish_run(repo, ledger, config)

    # After the fix, a second call on a ledger that knows nothing (a re-execution of the
    # step) runs only the failed quantum and those behind it.
    marker.unlink()
    fresh = prepare_run(repo, "T", str(graph_path), config, options=RunOptions(resume=True))
    fresh.states.clear()
    again = run_graphs([fresh], config, options=options)
    assert again.status == {"T": RunStatus.SUCCEEDED}
    assert again.skipped == {"T": 4}
    assert _registered(repo, "c_out") == {"all"}
    runs = {label: (counter / f"{label}.log").read_text().splitlines() for label in "abc"}
    assert len(runs["a"]) == 3 + 1 + 1  # 3, the retry, the fix
    assert len(runs["b"]) == 3 and len(runs["c"]) == 1  # nothing succeeded ran twice
    journal = Journal.for_run(repo, RUN)
    assert journal.last("run_finished") is not None
