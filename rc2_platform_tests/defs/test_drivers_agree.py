"""One failure scenario through the three drivers of the run-state machine.

A corrupt raw in one detector (its isr quantum fails) and a task that raises in one patch
(measure on patch 1): the local runner (``rc2 run``), DAGMan (``rc2 submit --dagman``,
its nodes run through the HTCondor schedd double, with their POST scripts and RETRY) and
the Dagster stages (the execution job on Dagster's real instance) must end with the same
succeeded, failed and blocked quanta, retry the failed ones as often, and register the
same outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from rc2_platform.butler import Butler
from rc2_platform.core.dataset_types import DatasetType
from rc2_platform.execution.backends.htcondor import HTCondorBackend, LocalScheddDouble
from rc2_platform.execution.dagman_submit import FINAL_NODE, submit_graph_dag
from rc2_platform.execution.execution_config import load_execution_config
from rc2_platform.execution.report import quantum_states
from rc2_platform.execution.run_state import QuantumState
from rc2_platform.execution.runner import RunOptions, run_graph
from rc2_platform.graph import TaskSummary
from rc2_platform.graph.io import load_graph
from rc2_platform.provenance_query import query_provenance
from rc2_platform_tests.defs.test_execution_assets import (
    VD,
    build_synthetic,
    prepare_config,
    record_graph,
    registered,
    replace_tasks,
    run_tract,
)
from rc2_platform_tests.execution.dagman_player import play_dagman

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")

BAD_RAW = {"instrument": "HSC", "visit": 2, "detector": 1}


def _scenario(root: Path) -> tuple[Path, Path, str]:
    """The synthetic tract with a truncated raw and measure failing on patch 1."""
    repo, graph_path, run = build_synthetic(root, visits=5, detectors=2, patches=2)
    graph = load_graph(graph_path)
    tasks = [
        TaskSummary(t.label, t.task_class, t.dimensions, {"fail_on": [{"patch": 1}]}, t.step)
        if t.label == "measure"
        else t
        for t in graph.tasks
    ]
    replace_tasks(graph, graph_path, tasks)
    with Butler(repo) as butler:
        (raw,) = butler.query_datasets(
            DatasetType("raw_standin", VD, "Json"),
            collections="raw/all",
            where="visit = 2 AND detector = 1",
        )
        path = butler.datastore.path_for(raw)
    path.write_bytes(path.read_bytes()[:5])  # truncated: not JSON any more
    return repo, graph_path, run


def _sets(repo: Path, run: str) -> dict[QuantumState | str, Any]:
    states = quantum_states(repo, run)
    sets: dict[QuantumState | str, Any] = {
        s: {i for i, st in states.items() if st is s}
        for s in (QuantumState.SUCCEEDED, QuantumState.FAILED, QuantumState.BLOCKED)
    }
    rows = query_provenance(repo, run, state=["failed"])  # every attempt of every failure
    sets["failed attempts"] = sorted((r["task"], r["data_id"], r["attempt"]) for r in rows)
    return sets


def test_local_dagman_and_dagster_drivers_agree(tmp_path: Path) -> None:
    config = load_execution_config()
    results = {}

    repo, graph_path, run = _scenario(tmp_path / "local")
    summary = run_graph(graph_path, repo, config=config, options=RunOptions(jobs=2))
    assert summary.status == "failed"
    results["local"] = (_sets(repo, run), registered(repo, load_graph(graph_path)))

    repo, graph_path, run = _scenario(tmp_path / "dagman")
    backend = HTCondorBackend(LocalScheddDouble(), config.backends.htcondor, config.retry)
    sub = submit_graph_dag(graph_path, repo, config=config, backend=backend, dry_run=True)
    codes = play_dagman(sub.dag)
    final = codes.pop(FINAL_NODE)
    assert set(codes.values()) == {0}  # retried while retriable, then final: every node done
    assert final == 3  # the FINAL node (rc2 aggregate --finish): some quanta failed
    results["dagman"] = (_sets(repo, run), registered(repo, load_graph(graph_path)))

    for driver in ("graph", "clusters"):  # one whole-graph step / a step per cluster
        repo, graph_path, run = _scenario(tmp_path / f"dagster-{driver}")
        with dg.instance_for_test() as instance:
            record_graph(instance, graph_path, run)
            # The steps that ran the failed quanta fail: so does the Dagster run.
            assert not run_tract(instance, repo, prepare_config(driver=driver)).success
        results[f"dagster-{driver}"] = (_sets(repo, run), registered(repo, load_graph(graph_path)))

    graph = load_graph(graph_path)
    local_sets, local_registered = results["local"]
    failed = sorted(
        (graph.quanta[i].task_label, graph.quanta[i].data_id.get("patch"))
        for i in local_sets[QuantumState.FAILED]
    )
    assert failed == [("isr", None)] + [("measure", 1)] * 5  # one detector; 5 bands of patch 1
    blocked = sorted(graph.quanta[i].task_label for i in local_sets[QuantumState.BLOCKED])
    assert blocked == [
        "calibrate",
        "characterizeImage",
        *["forcedPhotCoadd"] * 5,
        "mergeMeasurements",
    ]
    everything = set().union(*(local_sets[s] for s in QuantumState if s in local_sets))
    assert everything == set(range(len(graph)))
    attempts = [attempt for _task, _data_id, attempt in local_sets["failed attempts"]]
    assert sorted(attempts) == [1] * 6 + [2] * 6  # retry.max_retries 1: each failed twice
    for name in ("dagman", "dagster-graph", "dagster-clusters"):
        sets, n_registered = results[name]
        for state in local_sets:
            assert sets[state] == local_sets[state], (name, state)
        assert n_registered == local_registered, name
