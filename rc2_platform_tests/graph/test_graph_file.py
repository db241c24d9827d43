"""The QuantumGraph model and its file format."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import DatasetRef, DatasetType
from rc2_platform.errors import GraphError
from rc2_platform.graph import (
    Quantum,
    QuantumGraph,
    QuantumGraphReader,
    TaskSummary,
    load_graph,
    output_ref,
    save_graph,
)

RAW = DatasetType("raw", ("instrument", "exposure", "detector"), "Exposure")
BIAS = DatasetType("bias", ("instrument", "detector"), "Exposure", is_calibration=True)
POST = DatasetType("postISRCCD", ("instrument", "exposure", "detector"), "Exposure")
WARP = DatasetType("warp", ("instrument", "visit"), "Exposure")
RUN = "u/test/run1"


def make_graph(n_exposures: int = 300, n_detectors: int = 3) -> QuantumGraph:
    tasks = [
        TaskSummary(
            "isr", "pkg.Isr", ("instrument", "exposure", "detector"), {"do_bias": True}, "step1"
        ),
        TaskSummary("warp", "pkg.Warp", ("instrument", "visit"), {}, "step2"),
    ]
    quanta: list[Quantum] = []
    bias = {
        d: DatasetRef(
            BIAS, DataCoordinate(BIAS.dimensions, ("HSC", d)), "HSC/calib/2019", uuid.uuid4()
        )
        for d in range(n_detectors)
    }
    for e in range(n_exposures):
        for d in range(n_detectors):
            did = DataCoordinate(POST.dimensions, ("HSC", e, d))
            raw = DatasetRef(RAW, did, "HSC/raw/all", uuid.uuid4())
            quanta.append(
                Quantum(
                    len(quanta),
                    "isr",
                    did,
                    {"ccd": (raw,), "bias": (bias[d],)},
                    {"out": (output_ref(POST, did, RUN),)},
                )
            )
    for e in range(n_exposures):
        did = DataCoordinate(WARP.dimensions, ("HSC", e))
        ins = tuple(
            output_ref(POST, DataCoordinate(POST.dimensions, ("HSC", e, d)), RUN)
            for d in range(n_detectors)
        )
        quanta.append(
            Quantum(
                len(quanta), "warp", did, {"calexps": ins}, {"warp": (output_ref(WARP, did, RUN),)}
            )
        )
    clusters = {
        f"visit{e}": [e * n_detectors + d for d in range(n_detectors)] for e in range(n_exposures)
    }
    return QuantumGraph(
        tasks,
        quanta,
        output_run=RUN,
        input_collections=["HSC/defaults"],
        metadata={"where": "tract = 9615"},
        clusters=clusters,
    )


def test_round_trip_preserves_quanta_refs_and_edges(tmp_path: Path) -> None:
    graph = make_graph()
    save_graph(graph, tmp_path / "g.qgraph")
    loaded = load_graph(tmp_path / "g.qgraph")
    assert len(loaded) == len(graph)
    for a, b in zip(graph.quanta, loaded.quanta, strict=True):
        assert (a.task_label, a.data_id) == (b.task_label, b.data_id)
        assert {k: [r.id for r in v] for k, v in a.inputs.items()} == {
            k: [r.id for r in v] for k, v in b.inputs.items()
        }
        assert {k: [(r.id, r.run) for r in v] for k, v in a.outputs.items()} == {
            k: [(r.id, r.run) for r in v] for k, v in b.outputs.items()
        }
    assert loaded.task_edges() == {("isr", "warp"): 900}
    assert loaded.metadata["where"] == "tract = 9615"
    assert loaded.counts_by_task() == {"isr": 900, "warp": 300}


def test_file_is_compact(tmp_path: Path) -> None:
    graph = make_graph()
    size = save_graph(graph, tmp_path / "g.qgraph")
    # Every isr quantum carries one random raw UUID (16 bytes); the rest is structure.
    assert size / len(graph) < 150


def test_single_quantum_and_cluster_load_without_reading_everything(tmp_path: Path) -> None:
    graph = make_graph()
    save_graph(graph, tmp_path / "g.qgraph")
    with QuantumGraphReader(tmp_path / "g.qgraph") as reader:
        (q,) = reader.read_quanta([1000])
        assert q.task_label == "warp" and q.data_id["visit"] == 1000 - 900
        cluster = reader.read_cluster("visit7")
        assert [c.data_id["exposure"] for c in cluster] == [7, 7, 7]
        with pytest.raises(GraphError, match="no cluster 'nope'"):
            reader.read_cluster("nope")


def test_not_a_graph_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.qgraph"
    bad.write_bytes(b"hello world, not a graph")
    with pytest.raises(GraphError, match="not a QuantumGraph file"):
        load_graph(bad)


def test_downstream_closure_follows_edges() -> None:
    graph = make_graph(n_exposures=2, n_detectors=2)
    assert graph.all_downstream([0]) == {4}
    assert graph.topological_order()[:4] == [0, 1, 2, 3]


def test_clusters_group_by_rule_and_know_their_parents() -> None:
    from dataclasses import dataclass, field

    from rc2_platform.graph.clustering import plan_clusters

    @dataclass
    class Rule:
        group_by: list[str]
        tasks: list[str] = field(default_factory=list)
        max_quanta_per_job: int | None = None

    graph = make_graph(n_exposures=4, n_detectors=3)
    plan = plan_clusters(graph, {"step1": Rule(["instrument", "exposure"], ["isr"])})
    assert plan.stages == ["step1", "warp"]
    assert len(plan.in_stage("step1")) == 4
    assert all(len(plan.clusters[c]) == 3 for c in plan.in_stage("step1"))
    # Each warp quantum is its own cluster, reading one isr cluster.
    warp_clusters = plan.in_stage("warp")
    assert len(warp_clusters) == 4
    assert all(len(plan.parents[c]) == 1 for c in warp_clusters)

    split = plan_clusters(graph, {"step1": Rule(["instrument", "exposure"], ["isr"], 2)})
    assert len(split.in_stage("step1")) == 8

    with pytest.raises(GraphError, match="groups by .visit."):
        plan_clusters(graph, {"step1": Rule(["visit"], ["isr"])})
