"""The whole Dagster route on ``tiny`` with the real science tasks, sensor to asset checks.

One test, Dagster's real (temporary) instance, real sensor evaluations
(``build_sensor_context`` with the instance): ``tract_partitions_sensor`` adds the tract,
the ingest assets are materialized per band partition, ``quantum_graph_sensor`` requests
the tract's graph, the run it requests materializes ``quantum_graph``,
``execution_sensor`` requests the execution run, which runs every quantum (the job's
default: the whole graph in one step, in process) and evaluates the asset checks of every band partition; all pass, and each
band partition's metadata has that band's figures.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from rc2_platform.butler import Butler
from rc2_platform.defs import build_definitions
from rc2_platform.defs.execution_assets import OUTPUT_DATASET_TYPES
from rc2_platform.defs.execution_sensor import execution_sensor
from rc2_platform.defs.graph_assets import quantum_graph_sensor
from rc2_platform.defs.ingest_assets import (
    bright_object_masks,
    calibrations,
    instrument,
    raws,
    refcat_shards,
    skymap,
    truth_catalog,
    visits,
)
from rc2_platform.defs.resources import ButlerResource, SurveyResource
from rc2_platform.defs.tract_sensor import tract_partitions_sensor
from rc2_platform.defs.validation_figure import validation_figure_sensor
from rc2_platform.graph import load_graph
from rc2_platform.monitor.checks import STRUCTURAL_CHECKS, VALIDATION_CHECKS
from rc2_platform.simulate import SimulationResult

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")

FORCED = dg.AssetKey("deepCoadd_forced_src")


def _tick(sensor: Any, instance: dg.DagsterInstance, defs: dg.Definitions, **resources: Any) -> Any:
    context = dg.build_sensor_context(instance=instance, definitions=defs, resources=resources)
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        return sensor.evaluate_tick(context)


def _latest_checks(instance: dg.DagsterInstance) -> dict[tuple[str, str], bool]:
    out: dict[tuple[str, str], bool] = {}
    for name in (*STRUCTURAL_CHECKS, *VALIDATION_CHECKS):
        history = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(FORCED, name), limit=100
        )
        for record in history:  # newest first
            if record.partition is not None:
                out.setdefault((name, record.partition), record.status.value == "SUCCEEDED")
    return out


def _metadata(instance: dg.DagsterInstance, asset: str, partition: str) -> dict[str, Any]:
    (record,) = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    assert record.asset_materialization is not None
    return dict(record.asset_materialization.metadata)


def test_sensor_to_graph_to_execution_to_asset_checks(
    tiny_survey: SimulationResult, tmp_path: Path
) -> None:
    butler = ButlerResource(repo=str(tmp_path / "repo"))
    survey = SurveyResource(bootstrap_config=str(tiny_survey.bootstrap))
    resources = {"butler": butler, "survey": survey}
    defs = build_definitions(butler, survey)
    bands = sorted({v.band for v in tiny_survey.visits})
    with dg.instance_for_test() as instance:
        # 1. The tract sensor makes the survey's tract a partition.
        added = _tick(tract_partitions_sensor, instance, defs, survey=survey)
        (request,) = added.dynamic_partitions_requests
        (tract,) = request.partition_keys
        instance.add_dynamic_partitions("tracts", [tract])

        # 2. Ingest: the global assets, then each band partition of the tract.
        assert dg.materialize(
            [instrument, skymap, calibrations, truth_catalog],
            instance=instance,
            resources=resources,
        ).success
        for band in bands:
            assert dg.materialize(
                [raws, visits, bright_object_masks], partition_key=f"{band}|{tract}",
                instance=instance, resources=resources,
            ).success  # fmt: skip
        assert dg.materialize([refcat_shards], instance=instance, resources=resources).success

        # 3. The graph sensor requests the tract's graph; its run materializes quantum_graph.
        (graph_request,) = _tick(quantum_graph_sensor, instance, defs, survey=survey).run_requests
        assert graph_request.partition_key == tract and graph_request.tags["rc2/tract"] == tract
        graph_run = defs.resolve_job_def("quantum_graph_job").execute_in_process(
            instance=instance, partition_key=tract, run_config=graph_request.run_config,
            tags=graph_request.tags,
        )  # fmt: skip
        assert graph_run.success
        graph_meta = graph_run.asset_materializations_for_node("quantum_graph")[0].metadata
        graph = load_graph(str(graph_meta["path"].value))
        counts = graph_meta["counts_json"].value
        assert counts == graph.counts_by_task() and sum(counts.values()) == len(graph) > 0

        # 4. The execution sensor requests one run over the tract's bands; it runs everything.
        (exec_request,) = _tick(execution_sensor, instance, defs).run_requests
        assert exec_request.tags["rc2/tract"] == tract
        assert exec_request.tags["dagster/asset_partition_range_start"] == f"g|{tract}"
        run = defs.resolve_job_def("execution_job").execute_in_process(
            instance=instance, tags=exec_request.tags, run_config=exec_request.run_config
        )
        assert run.success
        partitions = {f"{b}|{tract}" for b in bands}
        for name in OUTPUT_DATASET_TYPES:
            assert instance.get_materialized_partitions(dg.AssetKey(name)) == partitions

        # 5. Every check of every band partition was evaluated by the run, and passed.
        checks = _latest_checks(instance)
        assert set(checks) == {
            (c, p) for c in (*STRUCTURAL_CHECKS, *VALIDATION_CHECKS) for p in partitions
        }
        assert all(checks.values()), [k for k, ok in checks.items() if not ok]

        # 6. Each band's metadata: its own coadds and catalogs, nothing failed; the per-band
        #    tables account for every quantum of the graph.
        coadds = Counter(
            str(q.data_id["band"]) for q in graph.quanta if q.task_label == "assembleCoadd"
        )
        output_run = str(graph_meta["output_run"].value)
        with Butler(butler.repo) as repo:
            for band in bands:
                key = f"{band}|{tract}"
                meta = _metadata(instance, "deepCoadd", key)
                assert meta["RUN"].value == output_run
                registered = repo.query_datasets(
                    "deepCoadd", collections=output_run, where=f"band = '{band}'"
                )
                assert meta["datasets"].value == len(registered) == coadds[band] > 0
                assert meta["quanta failed"].value == meta["quanta blocked"].value == 0
                forced = _metadata(instance, "deepCoadd_forced_src", key)
                assert forced["rows"].value > 0
        table = _metadata(instance, "calexp", f"{bands[0]}|{tract}")["per band"].value
        rows = {r.data["band"]: r.data for r in table.records}
        assert set(rows) >= set(bands)
        assert sum(r["quanta succeeded"] for r in rows.values()) == len(graph)

        # 7. The figure sensor requests one follow-up run for the tract; it draws the
        #    validation figure, which the validation_figure asset page shows inline.
        (figure_request,) = _tick(validation_figure_sensor, instance, defs).run_requests
        assert figure_request.partition_key == tract
        assert figure_request.run_key == f"figure-{tract}-{run.run_id}"
        figure_run = defs.resolve_job_def("validation_figure_job").execute_in_process(
            instance=instance, partition_key=tract, tags=figure_request.tags
        )
        assert figure_run.success
        figure = _metadata(instance, "validation_figure", tract)
        assert figure["RUN"].value == output_run
        assert Path(str(figure["validation figure"].value)).exists()
        assert "data:image/png;base64," in str(figure["validation figure (preview)"].value)
