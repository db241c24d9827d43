"""``rc2 pipeline show --config / --graph / --png`` (pipetask's --show config, pipeline-graph)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from rc2_platform.cli import main


def _show(*args: str) -> str:
    result = CliRunner().invoke(main, ["pipeline", "show", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_config_shows_full_configs_and_what_the_pipeline_sets(tmp_path: Path) -> None:
    docs = json.loads(_show("DRP-RC2", "--config", "--json"))
    assert list(docs)[:3] == ["isr", "characterizeImage", "calibrate"]
    assert docs["isr"]["class"] == "rc2_platform.tasks.isr.IsrTask"
    assert docs["calibrate"]["config"]["match_radius_arcsec"] == 1.0
    custom = tmp_path / "p.yaml"
    custom.write_text(yaml.safe_dump({"tasks": {"calibrate": {
        "class": "rc2_platform.tasks.calibrate.CalibrateTask",
        "config": {"match_radius_arcsec": 2.5}}}}))  # fmt: skip
    text = _show(str(custom), "--config")
    assert text.splitlines()[0].endswith("set by the pipeline: match_radius_arcsec")
    assert yaml.safe_load(text)["calibrate"]["match_radius_arcsec"] == 2.5
    one = _show(str(custom), "--config", "calibrate.match_radius_arcsec")
    assert one.strip() == "calibrate.match_radius_arcsec: 2.5"
    bad = CliRunner().invoke(main, ["pipeline", "show", str(custom), "--config", "calibrate.nope"])
    assert bad.exit_code == 1 and "no config field 'nope'" in bad.stderr
    nolabel = CliRunner().invoke(main, ["pipeline", "show", "DRP-RC2", "--config", "nope"])
    assert nolabel.exit_code == 1 and "no task 'nope'" in nolabel.stderr


def test_graph_lists_what_each_task_reads(tmp_path: Path) -> None:
    rows = {r["task"]: r for r in json.loads(_show("DRP-RC2", "--graph", "--json"))}
    reads = {k: sorted(v) for k, v in rows["deblend"]["reads"].items()}
    assert reads == {"mergeDetections": ["deepCoadd_mergeDet"], "assembleCoadd": ["deepCoadd"]}
    assert rows["isr"]["repository_inputs"] == ["bias", "dark", "flat", "raw"]
    assert rows["calibrate"]["step"] == "step1"
    text = _show("DRP-RC2", "--graph")
    assert "<- characterizeImage: icExp, icSrc" in text
    png = tmp_path / "p.png"
    result = CliRunner().invoke(main, ["pipeline", "show", "DRP-RC2", "--png", str(png)])
    assert result.exit_code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
