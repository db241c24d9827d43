"""The run queue limits runs per tract, whichever way they are launched.

Dagster's real instance (the shipped ``run_coordinator`` and deploy's ``concurrency:``
settings), the real code location of ``rc2_platform.defs`` (a gRPC code server, as under
``dagster dev``), launches through the GraphQL mutations the UI sends (a partition
backfill of a tract's outputs, a one-partition launch), the backfill daemon's iteration
creating the runs and the queue daemon's iteration launching them. Only the run launcher
is Dagster's ``MockedRunLauncher``: a launched run stays in progress until the test ends it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.backfill import execute_backfill_iteration
from dagster._daemon.run_coordinator import QueuedRunCoordinatorDaemon
from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION
from dagster_graphql.test.utils import execute_dagster_graphql, materialize_assets

from rc2_platform.defs.run_queue import TractRunCoordinator, tracts_from_tags

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")

TOP = Path(__file__).parents[2]
TRACTS = ["9615", "9697", "9813"]
OUTPUTS = ["calexp", "deepCoadd", "deepCoadd_ref", "deepCoadd_forced_src"]


def _overrides(instance_yaml: Path) -> dict[str, Any]:
    shipped = yaml.safe_load(instance_yaml.read_text())
    return {
        "run_coordinator": shipped["run_coordinator"],
        "concurrency": shipped["concurrency"],
        "run_launcher": {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"},
    }


def _backfill(context: Any, tracts: list[str]) -> str:
    result = execute_dagster_graphql(
        context,
        LAUNCH_PARTITION_BACKFILL_MUTATION,
        variables={
            "backfillParams": {
                "partitionNames": [f"{b}|{t}" for t in tracts for b in "grizy"],
                "assetSelection": [{"path": [name]} for name in OUTPUTS],
            }
        },
    )
    launched = result.data["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return str(launched["backfillId"])


def _status(instance: dg.DagsterInstance) -> dict[str, list[str]]:
    """rc2/tract of every run, by status."""
    out: dict[str, list[str]] = {}
    for run in instance.get_runs():
        out.setdefault(run.status.value, []).append(run.tags.get("rc2/tract", "-"))
    return {k: sorted(v) for k, v in out.items()}


def test_tags_derive_from_partition_tags() -> None:
    known = lambda: TRACTS  # noqa: E731
    assert tracts_from_tags({"rc2/tract": "9615,9697"}, known) == ["9615", "9697"]
    assert tracts_from_tags({"dagster/partition": "9697"}, known) == ["9697"]
    assert tracts_from_tags({"dagster/partition": "g|9813"}, known) == ["9813"]
    ranged = {"dagster/asset_partition_range_start": "g|9615"}
    assert tracts_from_tags({**ranged, "dagster/asset_partition_range_end": "y|9615"}, known) == [
        "9615"
    ]
    assert tracts_from_tags({**ranged, "dagster/asset_partition_range_end": "y|9813"}, known) == (
        TRACTS
    )
    assert tracts_from_tags({"dagster/partition": "2026-12-01"}, known) == []
    assert tracts_from_tags({}, known) == []


@pytest.mark.parametrize("instance_yaml", ["deploy/dagster.yaml"])
def test_second_run_of_a_tract_waits_in_the_queue_while_other_tracts_run(
    instance_yaml: str,
) -> None:
    with dg.instance_for_test(overrides=_overrides(TOP / instance_yaml)) as instance:
        assert isinstance(instance.run_coordinator, TractRunCoordinator)
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 8  # type: ignore[union-attr]
        instance.add_dynamic_partitions("tracts", TRACTS)
        target = ModuleTarget("rc2_platform.defs", None, str(TOP), "rc2_platform")
        with create_test_daemon_workspace_context(target, instance) as workspace:
            context = workspace.create_request_context()
            # UI: the four outputs, Materialize selected, bands All, tracts 9615 and 9697.
            _backfill(context, ["9615", "9697"])
            list(execute_backfill_iteration(workspace, logging.getLogger("backfill")))
            # UI: the asset page of calexp, Materialize (all four outputs: one multi-asset),
            # partition r|9615, "Launch 1 run".
            single = materialize_assets(context, [dg.AssetKey(n) for n in OUTPUTS], ["r|9615"])
            assert single[0].data["launchPipelineExecution"]["__typename"] == "LaunchRunSuccess"  # type: ignore[index]
            # Every run was queued with its tract, although launched with partition tags only.
            assert _status(instance) == {"QUEUED": ["9615", "9615", "9697"]}

            queue = QueuedRunCoordinatorDaemon(interval_seconds=1)
            list(queue.run_iteration(workspace))
            # One run of 9615 and the run of 9697 are in progress; the other 9615 waits.
            assert _status(instance) == {"STARTING": ["9615", "9697"], "QUEUED": ["9615"]}
            list(queue.run_iteration(workspace))
            assert _status(instance)["QUEUED"] == ["9615"]

            # A third tract runs beside them (UI backfill of 9813).
            _backfill(context, ["9813"])
            list(execute_backfill_iteration(workspace, logging.getLogger("backfill")))
            list(queue.run_iteration(workspace))
            assert _status(instance) == {"STARTING": ["9615", "9697", "9813"], "QUEUED": ["9615"]}

            # The 9615 run in progress ends: the waiting one starts.
            (running,) = instance.get_runs(
                dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING], tags={"rc2/tract": "9615"})
            )
            instance.report_run_failed(running)
            list(queue.run_iteration(workspace))
            assert _status(instance) == {"FAILURE": ["9615"], "STARTING": ["9615", "9697", "9813"]}
