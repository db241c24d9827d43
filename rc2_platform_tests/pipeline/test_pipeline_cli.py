"""``rc2 pipeline show``."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from rc2_platform.cli import main


def test_show_prints_tasks_connections_and_graph() -> None:
    result = CliRunner().invoke(main, ["pipeline", "show", "DRP-RC2"])
    assert result.exit_code == 0, result.output
    assert "isr  rc2_platform.tasks.isr.IsrTask" in result.output
    assert "prerequisite_input bias" in result.output
    assert "calibrate --calexp--> makeWarp" in result.output
    assert "step2: makeWarp" in result.output


def test_show_json_for_a_subset() -> None:
    result = CliRunner().invoke(main, ["pipeline", "show", "DRP-RC2#step1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [t["label"] for t in data["tasks"]] == ["isr", "characterizeImage", "calibrate"]
    assert data["dataset_types"]["calexp"]["producer"] == "calibrate"
    assert "raw" in data["overall_inputs"]


def test_bad_pipeline_exits_1_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"tasks": {"x": "no.such.Task"}}))
    result = CliRunner().invoke(main, ["pipeline", "show", str(path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and "'x'" in lines[0]
    missing = CliRunner().invoke(main, ["pipeline", "show", "DRP-RC2#nope"])
    assert missing.exit_code == 1 and "'nope'" in missing.output
