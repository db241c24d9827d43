"""One Dagster backfill builds the graphs of the three RC2 tracts (issue 12 item 6).

Runs ``benchmarks/dagster_tracts.py`` on a small version of the ``rc2`` preset (header-only
raws, 5 % of the visits, 4 detectors: every tract has quanta): a real instance from the
shipped ``dagster.yaml``, the code location loaded as ``dagster dev`` loads it, the
backfill launched with the UI's GraphQL mutation, the backfill and queue daemons'
iterations, runs launched by the ``DefaultRunLauncher``. Checks the instance and the
graph files, not only the script's JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from rc2_platform.graph import load_graph

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::dagster.BetaWarning")]

TOP = Path(__file__).parents[2]
TRACTS = ["9615", "9697", "9813"]


def test_one_backfill_builds_each_tracts_graph_in_its_own_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    done = subprocess.run(
        [sys.executable, str(TOP / "benchmarks" / "dagster_tracts.py"), "--work", str(work),
         "--scale", "0.05", "--max-detectors", "4", "--tracts", ",".join(TRACTS)],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["backfill_status"] == "COMPLETED_SUCCESS"
    assert [r["tract"] for r in result["runs"]] == TRACTS
    for run in result["runs"]:
        assert run["status"] == "SUCCESS" and run["rc2/tract"] == run["tract"]
        graph = load_graph(run["graph"])
        assert run["per_task"] == graph.counts_by_task()
        assert run["quanta"] == len(graph) > 0
        assert f"tract{run['tract']}" in run["output_run"]
    # At most two runs at once (the shipped dagster.yaml), never two of one tract.
    assert result["most_runs_at_once"] <= 2
    assert result["cpu_seconds_tree"] > 0 and result["load_before"] >= 0

    # The instance the backfill ran in: the three partitions are materialized, and each
    # run's log names its per-task counts.
    monkeypatch.setenv("DAGSTER_HOME", str(work / "dagster_home"))
    with dg.DagsterInstance.get() as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("quantum_graph")) == set(TRACTS)
        for run in result["runs"]:
            messages = [e.user_message for e in instance.all_logs(run["run_id"]) if e.user_message]
            first_task = next(iter(run["per_task"]))
            line = f"{first_task} {run['per_task'][first_task]}"
            assert any(f"tract {run['tract']}: {run['quanta']} quanta" in m and line in m
                       for m in messages)  # fmt: skip
    assert os.path.exists(work / "repo" / "butler.yaml")
