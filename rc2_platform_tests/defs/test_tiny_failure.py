"""The operator's failure path on the ``tiny`` survey with the real science tasks.

The asset checks on ``deepCoadd_forced_src`` (structure and validation against the
truth catalog the bootstrap ingested) are evaluated per band partition at the end of
both runs.

One g-band raw truncated: the Dagster run fails in the cluster step that ran its isr
quantum (at its first attempt: a truncated file is not retried), the error names task,
data ID and exception, the g partition
of ``calexp`` is not materialized while the other bands' are; after the raw is restored,
"Re-execute from failure" (``ReexecutionOptions.from_failure``) completes the tract and runs
only the failed quantum and those it blocked.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from rc2_platform.butler import Butler
from rc2_platform.defs import build_definitions
from rc2_platform.defs.execution_assets import OUTPUT_DATASET_TYPES
from rc2_platform.defs.resources import ButlerResource
from rc2_platform.defs.validation_figure import validation_figure_sensor
from rc2_platform.demo import demo_where
from rc2_platform.execution.journal import Journal
from rc2_platform.graph import save_graph
from rc2_platform.graph.builder import QuantumGraphBuilder
from rc2_platform.ingest import bootstrap, load_bootstrap_config
from rc2_platform.monitor.checks import STRUCTURAL_CHECKS, VALIDATION_CHECKS
from rc2_platform.pipeline import Pipeline
from rc2_platform.simulate import simulate
from rc2_platform_tests.defs.test_execution_assets import record_graph, run_record, run_tract

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::dagster.BetaWarning")]

RUN = "HSC/runs/dagster-tiny"


def _materialized(instance: dg.DagsterInstance) -> dict[str, set[str]]:
    return {n: instance.get_materialized_partitions(dg.AssetKey(n)) for n in OUTPUT_DATASET_TYPES}


def test_truncated_raw_fails_its_step_and_reexecution_from_failure_completes(
    tmp_path: Path,
) -> None:
    # Its own survey: the raw it truncates may be linked from the repository.
    config_path = simulate("tiny", tmp_path / "survey", seed=1).bootstrap
    config = load_bootstrap_config(config_path)
    repo = tmp_path / "repo"
    bootstrap(config_path, repo, processes=1)
    tract = str(config.tracts[0])
    where, bind = demo_where(config)
    with Butler(repo) as butler:
        graph = QuantumGraphBuilder(
            butler, Pipeline.from_yaml("DRP-RC2"), input_collections=[config.collections.defaults],
            output_run=RUN, where=where, bind=bind,
        ).build()  # fmt: skip
        raws = butler.query_datasets("raw", collections=config.collections.raw, where="band = 'g'")
        raw = sorted(raws, key=lambda r: sorted(r.data_id.to_dict().items()))[0]
        raw_path = butler.datastore.path_for(raw)
    graph_path = tmp_path / "tract.qgraph"
    save_graph(graph, graph_path)
    good = raw_path.read_bytes()
    raw_path.write_bytes(good[:20_000])
    bands = sorted({str(q.data_id["band"]) for q in graph.quanta if "band" in q.data_id.dimensions})
    exposure, detector = raw.data_id["exposure"], raw.data_id["detector"]
    with dg.instance_for_test() as instance:
        record_graph(instance, graph_path, RUN, tract=tract)
        first = run_tract(instance, repo, tract=tract)
        assert not first.success
        stats = {s.step_key: s.status.value for s in instance.get_run_step_stats(first.run_id)}
        failed = [k for k, v in stats.items() if v == "FAILURE"]
        assert len(failed) == 1 and failed[0].startswith("pipeline_outputs.run_step1["), failed
        assert stats["pipeline_outputs.materialize_outputs"] == "SUCCESS"
        error = next(e for e in first.all_events if e.is_step_failure)
        text = error.step_failure_data.error.to_string()
        assert "isr {" in text and f"exposure={exposure}" in text
        assert f"detector={detector}" in text and "failed (attempt 1)" in text
        assert "TruncatedFileError" in text
        parts = _materialized(instance)
        assert f"g|{tract}" not in parts["calexp"]
        assert parts["calexp"] == {f"{b}|{tract}" for b in bands if b != "g"}
        counts = Journal.for_run(repo, RUN).last("run_finished")["counts"]  # type: ignore[index]
        assert counts["failed"] == 1 and counts["blocked"] > 0
        before = len(list(Journal.for_run(repo, RUN).events("job_submitted")))

        raw_path.write_bytes(good)
        again = run_tract(instance, repo, tract=tract, reexecute=first.run_id)
        assert again.success
        journal = Journal.for_run(repo, RUN)
        rerun = {q[0] for e in list(journal.events("job_submitted"))[before:] for q in e["quanta"]}
        # The failed quantum and those it blocked, nothing that had succeeded.
        assert len(rerun) == counts["failed"] + counts["blocked"]
        final = journal.last("run_finished")["counts"]  # type: ignore[index]
        assert final["succeeded"] == len(graph)
        assert all(
            p == {f"{b}|{tract}" for b in bands} for p in _materialized(instance).values()
        ), _materialized(instance)
        mat = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("calexp"), asset_partitions=[f"g|{tract}"]),
            limit=1,
        ).records[0].asset_materialization  # fmt: skip
        assert mat is not None and mat.metadata["quanta failed"].value == 0
        assert run_record(instance, again.run_id).tags["rc2/tract"] == tract
        # Asset checks per partition: the g partition failed no_failed_quanta in the first
        # run; after the re-execution every check of every band passes (the truth catalog
        # came in with the bootstrap).
        checks = _latest_checks(instance)
        assert {p for (_c, p) in checks} == {f"{b}|{tract}" for b in bands}
        assert all(passed for passed in checks.values()), {k: v for k, v in checks.items() if not v}
        history = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(FORCED, "no_failed_quanta"), limit=100
        )
        assert any(r.partition == f"g|{tract}" and r.status.value == "FAILED" for r in history)
        # The figure sensor asks for one follow-up run per execution run that materialized
        # deepCoadd_forced_src: only the re-execution (the failed run's g failure blocked
        # every patch's band merge); it draws the figure of the completed RUN, shown inline
        # on the validation_figure asset page.
        defs = build_definitions(ButlerResource(repo=str(repo)))
        context = dg.build_sensor_context(instance=instance, definitions=defs)
        with dg.partition_loading_context(dynamic_partitions_store=instance):
            requests = validation_figure_sensor.evaluate_tick(context).run_requests
        assert [r.run_key for r in requests] == [f"figure-{tract}-{again.run_id}"]
        figure_job = defs.resolve_job_def("validation_figure_job")
        assert figure_job.execute_in_process(instance=instance, partition_key=tract).success
        (record,) = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("validation_figure")), limit=1
        ).records
        figure = record.asset_materialization
        assert figure is not None and figure.metadata["metrics passed"].value == "20 of 20"
        assert Path(str(figure.metadata["validation figure"].value)).exists()
        assert "data:image/png;base64," in str(figure.metadata["validation figure (preview)"].value)


FORCED = dg.AssetKey("deepCoadd_forced_src")


def _latest_checks(instance: dg.DagsterInstance) -> dict[tuple[str, str], bool]:
    """(check, partition) -> whether its newest evaluation passed."""
    out: dict[tuple[str, str], bool] = {}
    for name in (*STRUCTURAL_CHECKS, *VALIDATION_CHECKS):
        history = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(FORCED, name), limit=100
        )
        for record in history:  # newest first
            if record.partition is not None:
                out.setdefault((name, record.partition), record.status.value == "SUCCEEDED")
    return out
