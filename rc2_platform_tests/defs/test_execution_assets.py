"""The execution job: clusters fanned out stage by stage, outputs registered and materialized.

Runs Dagster's real instance and in-process executor against a real SQLite repository
holding a synthetic RC2-shaped graph of stand-in tasks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from rc2_platform.butler import Butler
from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import DatasetRef, DatasetType
from rc2_platform.defs.execution_assets import (
    OUTPUT_DATASET_TYPES,
    STAGES,
    execution_job,
    execution_resources,
    pipeline_outputs,
)
from rc2_platform.defs.graph_assets import quantum_graph
from rc2_platform.defs.ingest_assets import ingest_assets
from rc2_platform.defs.partitions import tract_range_keys
from rc2_platform.defs.resources import ButlerResource, SurveyResource
from rc2_platform.execution.execution_config import load_execution_config
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.stand_in import STAND_IN_CLASS
from rc2_platform.graph import Quantum, QuantumGraph, TaskSummary, output_ref, save_graph
from rc2_platform.graph.clustering import plan_clusters
from rc2_platform.graph.io import load_graph

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")

TRACT = "9615"


BANDS = ("g", "r", "i", "z", "y")
RUN = "u/test/exec"
VD = ("instrument", "visit", "detector")
PV = ("instrument", "visit", "skymap", "tract", "patch")
PB = ("band", "skymap", "tract", "patch")
P = ("skymap", "tract", "patch")
ORDER = ("isr", "characterizeImage", "calibrate", "makeWarp", "assembleCoadd", "detection",
         "mergeDetections", "deblend", "measure", "mergeMeasurements", "forcedPhotCoadd")  # fmt: skip


def _records(butler: Butler, visits: int, detectors: int, patches: int) -> None:
    reg = butler.registry
    reg.insert_dimension_records("instrument", [{"instrument": "HSC"}])
    reg.insert_dimension_records("band", [{"band": b} for b in BANDS])
    reg.insert_dimension_records(
        "physical_filter",
        [{"instrument": "HSC", "physical_filter": f"HSC-{b.upper()}", "band": b} for b in BANDS],
    )
    reg.insert_dimension_records("day_obs", [{"instrument": "HSC", "day_obs": 20160101}])
    reg.insert_dimension_records(
        "detector", [{"instrument": "HSC", "detector": d} for d in range(detectors)]
    )
    reg.insert_dimension_records(
        "visit",
        [
            {
                "instrument": "HSC",
                "visit": v,
                "physical_filter": f"HSC-{BANDS[v % 5].upper()}",
                "day_obs": 20160101,
            }
            for v in range(visits)
        ],
    )
    reg.insert_dimension_records("skymap", [{"skymap": "rings"}])
    reg.insert_dimension_records("tract", [{"skymap": "rings", "tract": int(TRACT)}])
    reg.insert_dimension_records(
        "patch", [{"skymap": "rings", "tract": int(TRACT), "patch": p} for p in range(patches)]
    )


class _Builder:
    """Adds stand-in quanta of the RC2 pipeline's shape (JSON outputs)."""

    def __init__(self) -> None:
        self.quanta: list[Quantum] = []
        self.dims: dict[str, tuple[str, ...]] = {}

    def add(self, label: str, dims: tuple[str, ...], values: tuple[Any, ...],
            inputs: dict[str, tuple[DatasetRef, ...]], out: str) -> DatasetRef:  # fmt: skip
        self.dims[label] = dims
        data_id = DataCoordinate(dims, values)
        ref = output_ref(DatasetType(out, dims, "Json"), data_id, RUN)
        meta = output_ref(DatasetType(f"{label}_metadata", dims, "Json"), data_id, RUN)
        self.quanta.append(
            Quantum(len(self.quanta), label, data_id, inputs, {"out": (ref,), "metadata": (meta,)})
        )
        return ref


def _coadd_quanta(
    b: _Builder, calexp: dict[tuple[int, int], DatasetRef], visits: int, p: int
) -> None:
    tract = int(TRACT)
    det, coadds = {}, {}
    for i, band in enumerate(BANDS):
        warps = tuple(
            b.add(
                "makeWarp",
                PV,
                ("HSC", v, "rings", tract, p),
                {"calexp": (calexp[v, 0],)},
                "deepCoadd_directWarp",
            )
            for v in range(i, visits, 5)
        )
        vals = (band, "rings", tract, p)
        coadds[band] = b.add("assembleCoadd", PB, vals, {"warps": warps}, "deepCoadd")
        det[band] = b.add("detection", PB, vals, {"coadd": (coadds[band],)}, "deepCoadd_det")
    merged = b.add(
        "mergeDetections",
        P,
        ("rings", tract, p),
        {"dets": tuple(det.values())},
        "deepCoadd_mergeDet",
    )
    meas = {}
    for band in BANDS:
        vals = (band, "rings", tract, p)
        flux = b.add(
            "deblend", PB, vals, {"m": (merged,), "c": (coadds[band],)}, "deepCoadd_deblendedFlux"
        )
        meas[band] = b.add("measure", PB, vals, {"f": (flux,)}, "deepCoadd_meas")
    ref = b.add(
        "mergeMeasurements", P, ("rings", tract, p), {"meas": tuple(meas.values())}, "deepCoadd_ref"
    )
    for band in BANDS:
        vals = (band, "rings", tract, p)
        b.add(
            "forcedPhotCoadd", PB, vals, {"r": (ref,), "c": (coadds[band],)}, "deepCoadd_forced_src"
        )


def build_synthetic(
    root: Path, visits: int, detectors: int, patches: int
) -> tuple[Path, Path, str]:
    """A SQLite repository and an RC2-shaped stand-in graph of tract 9615; (repo, graph, run).

    Single-frame quanta per visit x detector, one warp per visit x patch, coadd quanta per
    patch x band, merges per patch; visit ``v`` is in band ``BANDS[v % 5]``.
    """
    repo = root / "repo"
    butler = Butler.create(repo)
    _records(butler, visits, detectors, patches)
    raw = DatasetType("raw_standin", VD, "Json")
    butler.registry.register_run("raw/all")
    butler.registry.register_dataset_type(raw)
    raws, stored = {}, []
    for v in range(visits):
        for d in range(detectors):
            ref = output_ref(raw, DataCoordinate(VD, ("HSC", v, d)), "raw/all")
            raws[v, d] = ref
            stored.append((ref, butler.datastore.put({"raw": [v, d]}, ref)))
    butler.register_outputs(stored)
    butler.close()
    b = _Builder()
    calexp = {}
    for v in range(visits):
        for d in range(detectors):
            vals = ("HSC", v, d)
            isr = b.add("isr", VD, vals, {"raw": (raws[v, d],)}, "postISRCCD")
            ic = b.add("characterizeImage", VD, vals, {"inp": (isr,)}, "icExp")
            calexp[v, d] = b.add("calibrate", VD, vals, {"exp": (ic,)}, "calexp")
    for p in range(patches):
        _coadd_quanta(b, calexp, visits, p)
    rank = {label: i for i, label in enumerate(ORDER)}
    b.quanta.sort(key=lambda q: (rank[q.task_label], q.index))
    for i, q in enumerate(b.quanta):
        q.index = i
    tasks = [TaskSummary(label, STAND_IN_CLASS, b.dims[label], {}) for label in ORDER]
    graph = QuantumGraph(tasks, b.quanta, output_run=RUN, input_collections=["raw/all"])
    path = root / "tract.qgraph"
    save_graph(graph, path)
    return repo, path, RUN


def record_graph(instance: dg.DagsterInstance, graph: Path, run: str, tract: str = TRACT) -> None:
    """Make ``graph`` the newest quantum_graph materialization of ``tract``."""
    if not instance.has_dynamic_partition("tracts", tract):
        instance.add_dynamic_partitions("tracts", [tract])
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            quantum_graph.key,
            partition=tract,
            metadata={"path": dg.MetadataValue.path(str(graph)), "output_run": run},
        )
    )


def definitions(repo: Path, **pipes: Any) -> dg.Definitions:
    """Definitions with the execution assets, pointed at ``repo``."""
    from rc2_platform.defs.checks import deepCoadd_forced_src_checks
    from rc2_platform.defs.execution_sensor import execution_sensor
    from rc2_platform.defs.resources import ValidationResource

    return dg.Definitions(
        assets=[*ingest_assets, quantum_graph, pipeline_outputs],
        asset_checks=[deepCoadd_forced_src_checks],
        jobs=[execution_job],
        sensors=[execution_sensor],
        resources={
            "butler": ButlerResource(repo=str(repo)),
            "survey": SurveyResource(),
            "validation": ValidationResource(),
            **execution_resources(**pipes),
        },
    )


def range_tags(tract: str = TRACT) -> dict[str, str]:
    start, end = tract_range_keys(tract)
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def reconstruct_job(repo: str) -> dg.JobDefinition:
    """The execution job over ``repo`` (for ``dg.build_reconstructable_job``)."""
    return definitions(Path(repo)).resolve_job_def("execution_job")


def run_tract(
    instance: dg.DagsterInstance,
    repo: Path,
    run_config: Mapping[str, Any] | None = None,
    *,
    reexecute: str | None = None,
    tract: str = TRACT,
    **pipes: Any,
) -> Any:
    """Execute the tract through ``dg.execute_job`` (the job's own executor rules, in process);
    ``reexecute``: a run id to re-execute from failure. With Pipes clients (objects that
    cannot be reconstructed) through ``execute_in_process``."""
    config = {**IN_PROCESS, **dict(run_config or {})}
    if pipes:
        job = definitions(repo, **pipes).resolve_job_def("execution_job")
        return job.execute_in_process(
            instance=instance, tags=range_tags(), run_config=dict(run_config or {}),
            raise_on_error=False,
        )  # fmt: skip
    options = dg.ReexecutionOptions.from_failure(reexecute, instance) if reexecute else None
    job = dg.build_reconstructable_job(__name__, reconstruct_job.__name__, (str(repo),))
    with dg.execute_job(
        job, instance, run_config=config, tags=range_tags(tract), reexecution_options=options,
        raise_on_error=False,
    ) as result:  # fmt: skip
        return result


def registered(repo: Path, graph: QuantumGraph) -> int:
    """How many of the graph's outputs are registered with a file record."""
    with Butler(repo) as butler:
        return len(butler.datastore_records(r for q in graph.quanta for r in q.all_outputs()))


def replace_tasks(graph: QuantumGraph, path: Path, tasks: list[TaskSummary]) -> None:
    """Save ``graph`` with other task summaries."""
    new = QuantumGraph(
        tasks, graph.quanta, output_run=graph.output_run, input_collections=graph.input_collections,
        init_outputs=graph.init_outputs, metadata=graph.metadata, clusters=graph.clusters,
    )  # fmt: skip
    save_graph(new, path)


def prepare_config(**config: Any) -> dict[str, Any]:
    """Run config of ``prepare_execution``."""
    return {"ops": {"pipeline_outputs": {"ops": {"prepare_execution": {"config": config}}}}}


#: ``driver: clusters``: one step per cluster, stage by stage.
PER_CLUSTER = prepare_config(driver="clusters")


@pytest.mark.parametrize("driver", ["clusters", "graph"])
def test_tract_runs_with_bounded_steps_and_event_log(tmp_path: Path, driver: str) -> None:
    repo, graph_path, run = build_synthetic(tmp_path, visits=30, detectors=20, patches=10)
    graph = load_graph(graph_path)
    plan = plan_clusters(graph, load_execution_config().clustering)
    assert len(graph) > 2000 and 40 <= len(plan.clusters) <= 60
    with dg.instance_for_test() as instance:
        record_graph(instance, graph_path, run)
        result = run_tract(instance, repo, prepare_config(driver=driver))
        assert result.success
        run_id = result.run_id
        steps = instance.get_run_step_stats(run_id)
        fixed = 2 + len(STAGES)  # prepare, plan_<stage> per stage, materialize_outputs
        if driver == "clusters":
            assert len(steps) == len(plan.clusters) + fixed
        else:  # one step runs every cluster job, and logs each cluster as it ends
            assert {s.step_key for s in steps} >= {
                f"pipeline_outputs.run_step1[t{TRACT}_whole_graph]"
            }
            assert len(steps) == 1 + fixed
            logged = [m for m in log_messages(instance, run_id) if m.startswith("cluster ")]
            assert len(logged) == len(plan.clusters)
        assert all(s.status is not None and s.status.value == "SUCCESS" for s in steps)
        rows = instance.get_records_for_run(run_id, limit=100_000).records
        assert len(rows) < 20_000
        # Per tract, scaled: < 40 event rows per step.
        assert len(rows) < 40 * len(steps)
        # One materialization per output asset and band of the tract.
        for name in OUTPUT_DATASET_TYPES:
            parts = instance.get_materialized_partitions(dg.AssetKey(name))
            assert parts == {f"{b}|{TRACT}" for b in "grizy"}
        mat = (
            instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=dg.AssetKey("deepCoadd"), asset_partitions=[f"g|{TRACT}"]
                ),
                limit=1,
            )
            .records[0]
            .asset_materialization
        )
        assert mat is not None
        meta = mat.metadata
        assert meta["RUN"].value == run
        assert meta["quanta failed"].value == 0
        assert meta["datasets"].value == sum(
            1 for q in graph.quanta if q.task_label == "assembleCoadd" and q.data_id["band"] == "g"
        )
        table = meta["per band"].value
        assert isinstance(table, dg.TableMetadataValue)
        rows = {r.data["band"]: r.data for r in table.records}
        assert sum(r["quanta succeeded"] for r in rows.values()) == len(graph)
        assert rows["g"]["datasets"] == rows["g"]["expected"] == meta["datasets"].value
        assert run_record(instance, run_id).tags["rc2/tract"] == TRACT
        # Structural checks per partition pass; validation fails (no truth in this repo).
        key = dg.AssetCheckKey(dg.AssetKey("deepCoadd_forced_src"), "no_failed_quanta")
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
        assert {r.partition for r in history} == {f"{b}|{TRACT}" for b in BANDS}
        assert {r.status.value for r in history} == {"SUCCEEDED"}
        key = dg.AssetCheckKey(dg.AssetKey("deepCoadd_forced_src"), "completeness")
        (record, *_) = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
        assert record.status.value == "FAILED"
    outputs = sum(1 for q in graph.quanta for _ in q.all_outputs())
    assert registered(repo, graph) == outputs
    assert Journal.for_run(repo, run).last("run_finished")["status"] == "succeeded"  # type: ignore[index]


def log_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The run's log messages (``context.log`` lines included)."""
    return [e.user_message for e in instance.all_logs(run_id)]


def run_record(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun:
    record = instance.get_run_by_id(run_id)
    assert record is not None
    return record


def _set_fail_on(graph_path: Path, fail_on: list[dict[str, int]]) -> None:
    graph = load_graph(graph_path)
    tasks = [
        TaskSummary(t.label, t.task_class, t.dimensions, {"fail_on": fail_on}, t.step)
        if t.label == "calibrate"
        else t
        for t in graph.tasks
    ]
    replace_tasks(graph, graph_path, tasks)


@pytest.mark.parametrize("driver", ["graph", "clusters"])
def test_failed_cluster_step_fails_and_reexecution_from_failure_completes(
    tmp_path: Path, driver: str
) -> None:
    repo, graph_path, run = build_synthetic(tmp_path, visits=5, detectors=2, patches=1)
    # calibrate fails on visit 0 (band g) detector 0: its g warps, the g coadd and (through
    # the per-patch merges) every band's catalogs are blocked; other bands' coadds are not.
    _set_fail_on(graph_path, [{"visit": 0, "detector": 0}])
    config = prepare_config(driver=driver)
    with dg.instance_for_test() as instance:
        record_graph(instance, graph_path, run)
        result = run_tract(instance, repo, config)
        assert not result.success
        stats = {s.step_key: s.status.value for s in instance.get_run_step_stats(result.run_id)}
        failed = [k for k, v in stats.items() if v == "FAILURE"]
        assert len(failed) == 1 and failed[0].startswith("pipeline_outputs.run_step1[")
        # Later stages still ran what the failure does not block, and the outputs step too.
        assert stats["pipeline_outputs.plan_step2"] == "SUCCESS"
        if driver == "clusters":
            assert any(k.startswith("pipeline_outputs.run_step2[") for k in stats)
        else:
            assert failed == [f"pipeline_outputs.run_step1[t{TRACT}_whole_graph]"]
            journal = Journal.for_run(repo, run)
            stages = {e["stage"] for e in journal.events("job_submitted")}
            assert stages == {"step1", "step2"}  # step2's unblocked clusters ran
            messages = log_messages(instance, result.run_id)
            warned = [m for m in messages if "blocked by upstream failures" in m]
            assert warned  # the wholly blocked step3 cluster is named in the log
        assert stats["pipeline_outputs.materialize_outputs"] == "SUCCESS"
        failure = next(e for e in result.all_events if e.is_step_failure)
        text = failure.step_failure_data.error.to_string()
        assert "calibrate {instrument=HSC, visit=0, detector=0}" in text
        assert "told to fail" in text
        parts = {
            n: instance.get_materialized_partitions(dg.AssetKey(n)) for n in OUTPUT_DATASET_TYPES
        }
        others = {f"{b}|{TRACT}" for b in "rizy"}
        assert parts["calexp"] == parts["deepCoadd"] == others
        assert parts["deepCoadd_ref"] == parts["deepCoadd_forced_src"] == set()
        journal = Journal.for_run(repo, run)
        submitted_before = len(list(journal.events("job_submitted")))
        done_before = {q[0] for e in journal.events("job_submitted") for q in e["quanta"]}
        # Fix the input; "Re-execute from failure" completes the tract.
        _set_fail_on(graph_path, [])
        again = run_tract(instance, repo, config, reexecute=result.run_id)
        assert again.success
        rerun = list(journal.events("job_submitted"))[submitted_before:]
        rerun_quanta = {q[0] for e in rerun for q in e["quanta"]}
        graph = load_graph(graph_path)
        # Only the failed quantum and those it blocked ran again: nothing succeeded twice.
        ran_before_ok = done_before - rerun_quanta
        assert rerun_quanta and len(rerun_quanta) < len(graph) - len(ran_before_ok) + 1
        finished = list(journal.events("run_finished"))
        assert finished[-1]["counts"]["succeeded"] == len(graph)
        for name in OUTPUT_DATASET_TYPES:
            assert instance.get_materialized_partitions(dg.AssetKey(name)) == {
                f"{b}|{TRACT}" for b in "grizy"
            }
        retried = run_record(instance, again.run_id)
        assert retried.tags["rc2/tract"] == TRACT and retried.root_run_id == result.run_id
    assert registered(repo, graph) == sum(1 for q in graph.quanta for _ in q.all_outputs())


def test_batched_steps_run_clusters_at_once_and_fail_like_single_ones(tmp_path: Path) -> None:
    repo, graph_path, run = build_synthetic(tmp_path, visits=5, detectors=2, patches=1)
    _set_fail_on(graph_path, [{"visit": 0, "detector": 0}])
    config = prepare_config(driver="clusters", cluster_jobs_per_step=64)
    with dg.instance_for_test() as instance:
        record_graph(instance, graph_path, run)
        result = run_tract(instance, repo, config)
        assert not result.success
        stats = {s.step_key: s.status.value for s in instance.get_run_step_stats(result.run_id)}
        # At most one run step per stage (every cluster of a stage in one batch; step3 is
        # wholly blocked here: its per-patch merge reads the failure).
        for stage in STAGES:
            assert sum(k.startswith(f"pipeline_outputs.run_{stage}[") for k in stats) <= 1
        assert sum(k.startswith("pipeline_outputs.run_step1[") for k in stats) == 1
        failed = [k for k, v in stats.items() if v == "FAILURE"]
        assert len(failed) == 1 and failed[0].startswith("pipeline_outputs.run_step1[")
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert "calibrate {instrument=HSC, visit=0, detector=0}" in (
            failure.step_failure_data.error.to_string()
        )
        _set_fail_on(graph_path, [])
        again = run_tract(instance, repo, config, reexecute=result.run_id)
        assert again.success
    graph = load_graph(graph_path)
    assert registered(repo, graph) == sum(1 for q in graph.quanta for _ in q.all_outputs())


def test_graph_with_stage_missing_from_config_fails_clearly(tmp_path: Path) -> None:
    repo, graph_path, run = build_synthetic(tmp_path, visits=1, detectors=1, patches=1)
    graph = load_graph(graph_path)
    tasks = [
        TaskSummary(
            "extraTask" if t.label == "forcedPhotCoadd" else t.label,
            t.task_class,
            t.dimensions,
            t.config,
            t.step,
        )  # fmt: skip
        for t in graph.tasks
    ]
    for q in graph.quanta:
        if q.task_label == "forcedPhotCoadd":
            q.task_label = "extraTask"
    replace_tasks(graph, graph_path, tasks)
    with dg.instance_for_test() as instance:
        record_graph(instance, graph_path, run)
        result = run_tract(instance, repo)
        assert not result.success
        failure = [e for e in result.all_events if e.is_step_failure][0]
        error = failure.step_failure_data.error
        assert error is not None and "extraTask" in error.to_string()


@pytest.mark.parametrize(
    ("driver", "engine"), [("graph", "in process"), ("clusters", "multiprocess")]
)
def test_executor_without_run_config_is_in_process_for_whole_graph_runs_only(
    tmp_path: Path, driver: str, engine: str
) -> None:
    repo, graph_path, run = build_synthetic(tmp_path, visits=1, detectors=1, patches=1)
    # No executor in the run config: rc2_executor picks (UI launches, backfills, sensors).
    config = {**prepare_config(driver=driver), "execution": {"config": {}}}
    with dg.instance_for_test() as instance:
        record_graph(instance, graph_path, run)
        result = run_tract(instance, repo, config)
        assert result.success
        messages = log_messages(instance, result.run_id)
        assert any(m.startswith("Executing steps") and engine in m for m in messages), [
            m for m in messages if m.startswith("Executing steps")
        ]
