"""A tiny hand-built repository and QuantumGraph of stand-in tasks for execution tests.

Tasks (dimensions instrument+detector unless said): ``a``: raw -> a_out; ``b``: a_out ->
b_out; ``c`` (instrument): every b_out -> c_out. Clustering: ``step1`` groups a and b
by detector, ``step2`` holds c.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rc2_platform.butler import Butler
from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import DatasetRef, DatasetType
from rc2_platform.execution.execution_config import ClusteringRule, ExecutionConfig, RetryPolicy
from rc2_platform.execution.stand_in import STAND_IN_CLASS
from rc2_platform.graph import Quantum, QuantumGraph, TaskSummary, output_ref, save_graph
from rc2_platform.pipeline import PipelineTask, TaskConfig

RUN = "u/test/run1"
INPUT_RUN = "raw/all"
DETECTORS = (0, 1, 2)
ID = ("instrument", "detector")
INST = ("instrument",)

RAW = DatasetType("raw_standin", ID, "Json")
A_OUT = DatasetType("a_out", ID, "Json")
B_OUT = DatasetType("b_out", ID, "SourceCatalog")
C_OUT = DatasetType("c_out", INST, "StructuredDataDict")


def make_repo(root: Path) -> tuple[Butler, dict[int, DatasetRef]]:
    """Create a SQLite repository with HSC detectors and one raw per detector."""
    butler = Butler.create(root)
    butler.registry.insert_dimension_records("instrument", [{"instrument": "HSC"}])
    butler.registry.insert_dimension_records(
        "detector", [{"instrument": "HSC", "detector": d} for d in DETECTORS]
    )
    butler.registry.register_run(INPUT_RUN)
    butler.registry.register_dataset_type(RAW)
    raws = {
        d: butler.put({"pixels": [d]}, RAW, {"instrument": "HSC", "detector": d}, run=INPUT_RUN)
        for d in DETECTORS
    }
    return butler, raws


def _meta(label: str, dims: tuple[str, ...]) -> DatasetType:
    return DatasetType(f"{label}_metadata", dims, "StructuredDataDict")


def make_graph(
    path: Path,
    raws: Mapping[int, DatasetRef],
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    classes: Mapping[str, str] | None = None,
) -> QuantumGraph:
    """Build and save the a -> b -> c graph; ``configs``/``classes`` per task label."""
    configs, classes = configs or {}, classes or {}
    tasks = [
        TaskSummary(label, classes.get(label, STAND_IN_CLASS), dims, dict(configs.get(label, {})))
        for label, dims in (("a", ID), ("b", ID), ("c", INST))
    ]
    quanta: list[Quantum] = []

    def add(label: str, data_id: DataCoordinate, inputs: dict[str, tuple[DatasetRef, ...]],
            out_type: DatasetType) -> DatasetRef:  # fmt: skip
        out = output_ref(out_type, data_id, RUN)
        meta = output_ref(_meta(label, data_id.dimensions), data_id, RUN)
        quanta.append(
            Quantum(len(quanta), label, data_id, inputs, {"out": (out,), "metadata": (meta,)})
        )
        return out

    b_outs = []
    for d in DETECTORS:
        data_id = DataCoordinate(ID, ("HSC", d))
        a_out = add("a", data_id, {"raw": (raws[d],)}, A_OUT)
        b_outs.append(add("b", data_id, {"inp": (a_out,)}, B_OUT))
    add("c", DataCoordinate(INST, ("HSC",)), {"inp": tuple(b_outs)}, C_OUT)
    empty = DataCoordinate((), ())
    init = {
        t.label: [output_ref(DatasetType(f"{t.label}_config", (), "Config"), empty, RUN)]
        for t in tasks
    }
    graph = QuantumGraph(
        tasks, quanta, output_run=RUN, input_collections=[INPUT_RUN], init_outputs=init
    )
    save_graph(graph, path)
    return graph


def make_config(retries: int = 0, **retry: Any) -> ExecutionConfig:
    """Execution config clustering a+b per detector and c alone, 2 local jobs at once."""
    return ExecutionConfig(
        clustering={
            "step1": ClusteringRule(group_by=["instrument", "detector"], tasks=["a", "b"]),
            "step2": ClusteringRule(group_by=["instrument"], tasks=["c"]),
        },
        retry=RetryPolicy(max_retries=retries, **retry),
    )


class BadOutputTask(PipelineTask[TaskConfig]):
    """Returns an output the quantum does not have."""

    default_label = "bad"

    def run_quantum(self, inputs: Mapping[str, Any], data_id: Mapping[str, Any]) -> dict[str, Any]:
        """Return the wrong output name."""
        return {"surprise": {}}
