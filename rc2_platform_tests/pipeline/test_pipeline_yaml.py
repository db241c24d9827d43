"""Loading pipeline YAML: config overrides, connection checks, subsets, imports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from rc2_platform.errors import PipelineError
from rc2_platform.pipeline import Pipeline

T = "rc2_platform_tests.pipeline.example_tasks."


def write(tmp_path: Path, data: dict[str, Any], name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def two_tasks(**consume: Any) -> dict[str, Any]:
    return {
        "tasks": {
            "produce": {"class": T + "ProduceTask"},
            "consume": {"class": T + "ConsumeTask", **consume},
        },
        "subsets": {"first": {"subset": ["produce"], "description": "just one"}},
    }


def test_config_overrides_are_applied_and_frozen(tmp_path: Path) -> None:
    data = two_tasks()
    data["tasks"]["produce"]["config"] = {"scale": 2.5}
    pipeline = Pipeline.from_yaml(write(tmp_path, data))
    config = pipeline["produce"].config
    assert config.scale == 2.5  # type: ignore[attr-defined]
    assert config.mode == "fast"  # type: ignore[attr-defined]
    with pytest.raises(pydantic.ValidationError):
        config.scale = 3.0  # type: ignore[attr-defined]
    task = pipeline["produce"].make_task()
    assert task.label == "produce"
    assert task.run_quantum({"source": 2.0}, {"visit": 1}) == {"thing": 5.0}
    assert task.get_metadata() == {"data_id": {"visit": 1}, "scaled": True}


@pytest.mark.parametrize(
    ("override", "field"),
    [({"scale": -1.0}, "scale"), ({"scale": "big"}, "scale"), ({"speed": 3}, "speed")],
)
def test_invalid_config_override_names_label_and_field(
    tmp_path: Path, override: dict[str, Any], field: str
) -> None:
    data = two_tasks()
    data["tasks"]["produce"]["config"] = override
    with pytest.raises(PipelineError) as info:
        Pipeline.from_yaml(write(tmp_path, data))
    message = str(info.value)
    assert "'produce'" in message and f"'{field}'" in message and "\n" not in message


def test_parameters_substitute_config_values(tmp_path: Path) -> None:
    data = two_tasks()
    data["parameters"] = {"factor": 4.0}
    data["tasks"]["produce"]["config"] = {"scale": "parameters.factor"}
    assert Pipeline.from_yaml(write(tmp_path, data))["produce"].config.scale == 4.0  # type: ignore[attr-defined]
    data["tasks"]["produce"]["config"] = {"scale": "parameters.nope"}
    with pytest.raises(PipelineError, match="undefined parameter 'nope'"):
        Pipeline.from_yaml(write(tmp_path, data))


@pytest.mark.parametrize(
    ("consumer", "what"),
    [
        ("ConsumeOtherStorageTask", "[SourceCatalog]"),
        ("ConsumePerVisitTask", "thing(instrument, visit)"),
    ],
)
def test_mismatched_connection_names_both_tasks(tmp_path: Path, consumer: str, what: str) -> None:
    data = two_tasks()
    data["tasks"]["consume"]["class"] = T + consumer
    with pytest.raises(PipelineError) as info:
        Pipeline.from_yaml(write(tmp_path, data))
    message = str(info.value)
    assert "'thing'" in message
    assert "task 'produce'" in message and "task 'consume'" in message
    assert "thing(instrument, detector, visit) [Exposure]" in message  # producer's definition
    assert what in message  # consumer's definition


def test_dataset_type_produced_twice(tmp_path: Path) -> None:
    data = two_tasks()
    data["tasks"]["produce2"] = {"class": T + "ProduceTask"}
    with pytest.raises(PipelineError, match=r"'thing' is produced by more than one task"):
        Pipeline.from_yaml(write(tmp_path, data))


def test_renaming_a_connection_resolves_a_duplicate(tmp_path: Path) -> None:
    data = two_tasks()
    data["tasks"]["produce2"] = {"class": T + "ProduceTask", "connections": {"thing": "thing2"}}
    graph = Pipeline.from_yaml(write(tmp_path, data)).to_graph()
    assert graph.producers["thing2"] == "produce2"
    assert graph.consumers["thing"] == ("consume",)
    data["tasks"]["produce2"]["connections"] = {"nothing": "x"}
    with pytest.raises(PipelineError, match="no such connection"):
        Pipeline.from_yaml(write(tmp_path, data))


def test_prerequisite_cannot_be_produced(tmp_path: Path) -> None:
    data = two_tasks()
    data["tasks"]["consume"]["class"] = T + "PrereqThingTask"
    with pytest.raises(PipelineError, match="prerequisite input of task 'consume'"):
        Pipeline.from_yaml(write(tmp_path, data))


def test_output_dimensions_must_follow_from_quantum(tmp_path: Path) -> None:
    data = {"tasks": {"bad": T + "BadOutputDimsTask"}}
    with pytest.raises(PipelineError, match="task 'bad': output 'out'"):
        Pipeline.from_yaml(write(tmp_path, data))


@pytest.mark.parametrize(
    ("cls", "pattern"),
    [
        ("no_such_package.module.Task", "not in an allowed task module"),
        ("rc2_platform_tests.no_such.Task", "cannot import module 'rc2_platform_tests.no_such'"),
        (T + "Missing", "has no class 'Missing'"),
        (T + "NotATask", "is not a PipelineTask subclass"),
        ("JustAName", "not a dotted path"),
    ],
)
def test_unimportable_class(tmp_path: Path, cls: str, pattern: str) -> None:
    data = two_tasks()
    data["tasks"]["consume"]["class"] = cls
    with pytest.raises(PipelineError, match=pattern) as info:
        Pipeline.from_yaml(write(tmp_path, data))
    assert "'consume'" in str(info.value)


def test_select_subsets_and_labels(tmp_path: Path) -> None:
    path = write(tmp_path, two_tasks())
    assert Pipeline.from_yaml(f"{path}#first").labels == ("produce",)
    assert Pipeline.from_yaml(f"{path}#consume").labels == ("consume",)
    assert Pipeline.from_yaml(f"{path}#first,consume").to_graph().labels == ("produce", "consume")
    assert Pipeline.from_yaml(f"{path}#consume").to_graph().overall_inputs == ("thing",)
    with pytest.raises(PipelineError, match="'bogus' is neither a subset"):
        Pipeline.from_yaml(f"{path}#bogus")


def test_topological_order_ignores_yaml_order(tmp_path: Path) -> None:
    data = two_tasks()
    data["tasks"] = dict(reversed(list(data["tasks"].items())))
    pipeline = Pipeline.from_yaml(write(tmp_path, data))
    assert pipeline.labels == ("consume", "produce")
    assert pipeline.to_graph().labels == ("produce", "consume")
    assert pipeline.to_graph().upstream("consume") == ("produce",)
    assert pipeline.to_graph().downstream("produce") == ("consume",)


def test_subset_with_unknown_label(tmp_path: Path) -> None:
    data = two_tasks()
    data["subsets"]["broken"] = {"subset": ["produce", "ghost"]}
    with pytest.raises(
        PipelineError, match=r"subset 'broken' names unknown task label\(s\) \['ghost'\]"
    ):
        Pipeline.from_yaml(write(tmp_path, data))


def test_invalid_documents(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("tasks: [unclosed\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        Pipeline.from_yaml(bad_yaml)
    with pytest.raises(PipelineError, match="tsaks"):
        Pipeline.from_yaml(write(tmp_path, {"tsaks": {}}))
    with pytest.raises(PipelineError, match="has no 'class'"):
        Pipeline.from_yaml(write(tmp_path, {"tasks": {"x": {"config": {}}}}))
    with pytest.raises(PipelineError, match="does not exist"):
        Pipeline.from_yaml(tmp_path / "missing.yaml")


def test_imports_merge_and_override(tmp_path: Path) -> None:
    base = two_tasks()
    base["tasks"]["produce"]["config"] = {"scale": 2.0, "mode": "slow"}
    write(tmp_path, base, "base.yaml")
    child = {
        "imports": [{"location": "base.yaml", "exclude": ["consume"]}],
        "tasks": {"produce": {"config": {"scale": 3.0}}},
    }
    pipeline = Pipeline.from_yaml(write(tmp_path, child, "child.yaml"))
    assert pipeline.labels == ("produce",)
    config = pipeline["produce"].config
    assert (config.scale, config.mode) == (3.0, "slow")  # type: ignore[attr-defined]
    assert pipeline.subsets["first"].labels == ("produce",)
    write(tmp_path, {"imports": ["loop.yaml"]}, "loop.yaml")
    with pytest.raises(PipelineError, match="imports itself"):
        Pipeline.from_yaml(tmp_path / "loop.yaml")
