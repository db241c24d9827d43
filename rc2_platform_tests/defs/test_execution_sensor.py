"""The execution sensor and per-tract backfills: one run per tract, each graph run once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from rc2_platform.defs.execution_sensor import execution_sensor
from rc2_platform.defs.partitions import tract_partitions
from rc2_platform_tests.defs.test_execution_assets import (
    TRACT,
    build_synthetic,
    definitions,
    record_graph,
)

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")


def _tick(instance: dg.DagsterInstance, repo: Path, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=definitions(repo)
    )
    return execution_sensor.evaluate_tick(context)  # type: ignore[return-value]


def test_sensor_requests_one_run_per_tract_once_and_the_run_covers_the_tract_bands(
    tmp_path: Path,
) -> None:
    repo, graph, run = build_synthetic(tmp_path, visits=2, detectors=1, patches=1)
    with dg.instance_for_test() as instance:
        assert not _tick(instance, repo, None).run_requests
        record_graph(instance, graph, run)
        record_graph(instance, graph, run, tract="9697")
        record_graph(instance, graph, run)  # rebuilt: still one request for 9615
        first = _tick(instance, repo, None)
        requests = sorted(first.run_requests or [], key=lambda r: r.tags["rc2/tract"])
        assert [r.tags["rc2/tract"] for r in requests] == [TRACT, "9697"]
        assert requests[0].tags["dagster/asset_partition_range_start"] == f"g|{TRACT}"
        assert requests[0].tags["dagster/asset_partition_range_end"] == f"y|{TRACT}"
        # The cursor remembers the graphs: nothing new on the next tick.
        assert not _tick(instance, repo, first.cursor).run_requests
        # Launch the 9615 request as the daemon would: one run, all five band partitions.
        job = definitions(repo).resolve_job_def("execution_job")
        result = job.execute_in_process(instance=instance, tags=requests[0].tags)
        assert result.success
        mats = result.asset_materializations_for_node("pipeline_outputs")
        assert {m.partition for m in mats if m.asset_key == dg.AssetKey("deepCoadd")} == {
            f"{b}|{TRACT}" for b in "grizy"
        }


def test_sensor_carries_the_schedules_reprocessing_tag(tmp_path: Path) -> None:
    repo, graph, run = build_synthetic(tmp_path, visits=1, detectors=1, patches=1)

    @dg.asset(name="quantum_graph", partitions_def=tract_partitions)
    def stand_in_graph() -> dg.MaterializeResult:
        return dg.MaterializeResult(
            metadata={"path": dg.MetadataValue.path(str(graph)), "output_run": run}
        )

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tracts", [TRACT])
        tags = {"rc2/tract": TRACT, "rc2/reprocessing": "2026-12-01"}
        assert dg.materialize(
            [stand_in_graph], instance=instance, partition_key=TRACT, tags=tags
        ).success
        (request,) = _tick(instance, repo, None).run_requests or []
        assert request.tags["rc2/reprocessing"] == "2026-12-01"
        assert request.tags["rc2/tract"] == TRACT


def test_cli_partition_range_backfill_of_a_tract_is_one_run(tmp_path: Path) -> None:
    repo, graph, run = build_synthetic(tmp_path, visits=2, detectors=1, patches=1)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        record_graph(instance, graph, run)
    env = {**os.environ, "DAGSTER_HOME": str(home), "RC2_REPO": str(repo)}
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"), "asset", "materialize",
            "-m", "rc2_platform.defs", "--select", "group:outputs",
            "--partition-range", f"g|{TRACT}...y|{TRACT}",
            # In-process steps keep the test fast (the default multiprocess executor costs
            # ~1 s per step on these machines); the run and its partitions are the same.
            "--config-json", '{"execution": {"config": {"in_process": {}}}}',
        ],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 1
        assert runs[0].status == dg.DagsterRunStatus.SUCCESS
        parts = instance.get_materialized_partitions(dg.AssetKey("deepCoadd_forced_src"))
        assert parts == {f"{b}|{TRACT}" for b in "grizy"}
