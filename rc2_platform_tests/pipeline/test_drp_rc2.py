"""The shipped RC2 pipeline: eleven tasks with DESIGN.md's labels, dimensions and datasets."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest
import yaml

from rc2_platform.pipeline import DRP_RC2, LookupKind, Pipeline, PipelineGraph

REPO_ROOT = Path(__file__).resolve().parents[2]

#: label -> (quantum dimensions, main inputs, main outputs), from DESIGN.md.
EXPECTED = {
    "isr": (
        {"instrument", "exposure", "detector"},
        {"raw", "bias", "dark", "flat"},
        {"postISRCCD"},
    ),
    "characterizeImage": ({"instrument", "visit", "detector"}, {"postISRCCD"}, {"icExp", "icSrc"}),
    "calibrate": (
        {"instrument", "visit", "detector"},
        {"icExp", "icSrc", "synth_refcat"},
        {"calexp", "src"},
    ),
    # visit requires instrument, so makeWarp's quanta carry it.
    "makeWarp": (
        {"instrument", "skymap", "tract", "patch", "visit"},
        {"calexp", "skyMap"},
        {"deepCoadd_directWarp"},
    ),
    "assembleCoadd": (
        {"skymap", "tract", "patch", "band"},
        {"deepCoadd_directWarp", "skyMap", "brightObjectMask"},
        {"deepCoadd"},
    ),
    "detection": ({"skymap", "tract", "patch", "band"}, {"deepCoadd"}, {"deepCoadd_det"}),
    "mergeDetections": (
        {"skymap", "tract", "patch"},
        {"deepCoadd_det", "skyMap"},
        {"deepCoadd_mergeDet"},
    ),
    "deblend": (
        {"skymap", "tract", "patch", "band"},
        {"deepCoadd_mergeDet", "deepCoadd"},
        {"deepCoadd_deblendedFlux"},
    ),
    "measure": (
        {"skymap", "tract", "patch", "band"},
        {"deepCoadd_deblendedFlux", "deepCoadd", "brightObjectMask"},
        {"deepCoadd_meas"},
    ),
    "mergeMeasurements": ({"skymap", "tract", "patch"}, {"deepCoadd_meas"}, {"deepCoadd_ref"}),
    "forcedPhotCoadd": (
        {"skymap", "tract", "patch", "band"},
        {"deepCoadd_ref", "deepCoadd"},
        {"deepCoadd_forced_src"},
    ),
}


@pytest.fixture(scope="module")
def graph() -> PipelineGraph:
    return Pipeline.from_yaml("DRP-RC2").to_graph()


def test_eleven_tasks_in_topological_order(graph: PipelineGraph) -> None:
    assert set(graph.labels) == set(EXPECTED)
    assert len(graph.tasks) == 11
    position = {label: i for i, label in enumerate(graph.labels)}
    for producer, consumer, _ in graph.edges():
        assert position[producer] < position[consumer]
    assert graph.labels[0] == "isr"
    assert graph.labels[-1] == "forcedPhotCoadd"


@pytest.mark.parametrize("label", sorted(EXPECTED))
def test_task_dimensions_and_dataset_types(graph: PipelineGraph, label: str) -> None:
    dims, inputs, outputs = EXPECTED[label]
    task = graph.task(label)
    assert set(task.dimensions) == dims
    read = {
        c.dataset_type_name for c in [*task.inputs.values(), *task.prerequisite_inputs.values()]
    }
    assert read == inputs
    assert {c.dataset_type_name for c in task.run_outputs.values()} == outputs
    assert task.outputs["metadata"].dataset_type_name == f"{label}_metadata"
    assert task.init_outputs["config"].dataset_type_name == f"{label}_config"


def test_dataset_type_definitions(graph: PipelineGraph) -> None:
    types = graph.dataset_types
    assert set(types["raw"].dataset_type.dimensions) == {"instrument", "exposure", "detector"}
    assert set(types["flat"].dataset_type.dimensions) == {
        "instrument",
        "detector",
        "physical_filter",
    }
    assert set(types["bias"].dataset_type.dimensions) == {"instrument", "detector"}
    for name in ("bias", "dark", "flat"):
        assert types[name].dataset_type.is_calibration
        assert types[name].lookup is LookupKind.CALIBRATION
    assert not types["raw"].dataset_type.is_calibration
    assert types["skyMap"].dataset_type.dimensions == ("skymap",)
    assert types["skyMap"].dataset_type.storage_class == "SkyMap"
    refcat = graph.task("calibrate").prerequisite_inputs["ref_cat"]
    assert refcat.multiple and refcat.dimensions == ("htm7",)
    assert types["synth_refcat"].lookup is LookupKind.SPATIAL
    assert types["calexp"].consumers == ("makeWarp",)
    assert graph.task("makeWarp").inputs["calexp_list"].multiple
    assert graph.task("mergeDetections").inputs["catalogs"].multiple
    assert types["deepCoadd"].consumers == ("detection", "deblend", "measure", "forcedPhotCoadd")
    assert types["src"].dataset_type.storage_class == "SourceCatalog"
    assert graph.overall_inputs == (
        "bias",
        "brightObjectMask",
        "dark",
        "flat",
        "raw",
        "skyMap",
        "synth_refcat",
    )


def test_steps_and_subsets() -> None:
    pipeline = Pipeline.from_yaml(DRP_RC2)
    graph = pipeline.to_graph()
    assert [s.name for s in graph.steps] == ["step1", "step2", "step3"]
    assert graph.steps[0].labels == ("isr", "characterizeImage", "calibrate")
    assert graph.steps[1].labels == ("makeWarp",)
    assert len(graph.steps[2].labels) == 7
    assert graph.step_of("deblend") == "step3"
    step1 = Pipeline.from_yaml("DRP-RC2#step1").to_graph()
    assert step1.labels == ("isr", "characterizeImage", "calibrate")
    assert [s.name for s in step1.steps] == ["step1"]
    assert "postISRCCD" not in step1.overall_inputs
    step3 = Pipeline.from_yaml("DRP-RC2#step3").to_graph()
    assert "deepCoadd_directWarp" in step3.overall_inputs
    assert Pipeline.from_yaml("DRP-RC2#singleFrame").labels == step1.labels


def test_top_level_copy_is_identical() -> None:
    shipped = importlib.resources.files("rc2_platform.pipelines").joinpath("DRP-RC2.yaml")
    assert (REPO_ROOT / "pipelines" / "DRP-RC2.yaml").read_text() == shipped.read_text()
    by_path = Pipeline.from_yaml(REPO_ROOT / "pipelines" / "DRP-RC2.yaml")
    assert by_path.labels == Pipeline.from_yaml("DRP-RC2").labels


def test_isr_drops_disabled_calibrations(tmp_path: Path) -> None:
    text = importlib.resources.files("rc2_platform.pipelines").joinpath("DRP-RC2.yaml").read_text()
    data = yaml.safe_load(text)
    data["tasks"]["isr"]["config"]["do_dark"] = False
    pipeline = Pipeline.from_mapping(data)
    assert set(pipeline["isr"].prerequisite_inputs) == {"bias", "flat"}
    assert "dark" not in pipeline.to_graph().dataset_types


def test_storage_classes_are_known(graph: PipelineGraph) -> None:
    config = importlib.resources.files("rc2_platform").joinpath("config/storage_classes.yaml")
    if not config.is_file():
        pytest.skip("storage_classes.yaml not written yet")
    known = yaml.safe_load(config.read_text())
    names = set(known.get("storage_classes", known)) if isinstance(known, dict) else set()
    used = {n.dataset_type.storage_class for n in graph.dataset_types.values()}
    assert used <= names, f"storage classes missing from storage_classes.yaml: {used - names}"
