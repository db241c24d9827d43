"""Contracts: evaluated safely at load time."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rc2_platform.errors import PipelineError
from rc2_platform.pipeline import Pipeline
from rc2_platform.pipeline.contracts import evaluate_contract

T = "rc2_platform_tests.pipeline.example_tasks."


def load(tmp_path: Path, *contracts: object, fragment: str = "") -> Pipeline:
    data = {
        "parameters": {"limit": 2},
        "tasks": {"a": T + "ProduceTask", "b": T + "ConsumeTask"},
        "contracts": list(contracts),
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    return Pipeline.from_yaml(f"{path}{fragment}")


def test_holding_contracts_load(tmp_path: Path) -> None:
    pipeline = load(
        tmp_path,
        "a.scale == 1.0",
        {"contract": "a.scale * 2 <= parameters.limit and a.mode in ('fast', 'slow')"},
        {"contract": "not a.mode == 'slow' or a.scale > 1", "msg": "slow needs scale"},
    )
    assert len(pipeline.contracts) == 3


def test_violated_contract_names_it_and_its_message(tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as info:
        load(tmp_path, {"contract": "a.scale > 5", "msg": "scale must exceed 5"})
    assert "'a.scale > 5' is violated: scale must exceed 5" in str(info.value)


def test_contract_about_absent_task_is_skipped(tmp_path: Path) -> None:
    with pytest.raises(PipelineError):
        load(tmp_path, "a.scale > 5")
    # A contract naming a label the pipeline does not have (e.g. after an import with
    # exclude) is skipped rather than failing.
    data = {"tasks": {"b": T + "ConsumeTask"}, "contracts": ["a.scale > 5"]}
    path = tmp_path / "q.yaml"
    path.write_text(yaml.safe_dump(data))
    assert Pipeline.from_yaml(path).labels == ("b",)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('true')",
        "a.__class__",
        "[x for x in (1, 2)]",
        "lambda: 1",
        "a.scale if a else 1",
    ],
)
def test_code_is_not_evaluated(tmp_path: Path, expression: str) -> None:
    with pytest.raises(PipelineError, match="not allowed|private attribute"):
        load(tmp_path, expression)


def test_unknown_field_or_syntax_error(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="could not be evaluated"):
        load(tmp_path, "a.no_such_field == 1")
    with pytest.raises(PipelineError, match="not a valid expression"):
        load(tmp_path, "a.scale ==")


def test_evaluate_contract_operators() -> None:
    ns = {"x": {"v": 3}, "parameters": {"n": 2}}
    assert evaluate_contract("x.v - parameters.n == 1", ns) is True
    assert evaluate_contract("1 < x.v < 3", ns) is False
    assert evaluate_contract("-x.v / 3 == -1.0", ns) is True
    assert evaluate_contract("x.v is not None", ns) is True
