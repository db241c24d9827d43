"""Hostile pipeline and configuration files: task classes outside the allow-list, YAML traps.

Each is refused with one line before anything happens: no module named by a pipeline's
``class:`` is imported unless it lies in an allowed package (the YAML loader's own cases
are in test_yaml.py; here they come through the commands that read the files).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rc2_platform_tests.hostile.conftest import RUN, expect_cli_refusal

BOMB = "\n".join(
    ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
)
TRAP_MODULE = "rc2_hostile_trap_module"

PIPELINES = {
    "outside allow-list": f"tasks:\n  evil: {{class: {TRAP_MODULE}.EvilTask}}\n",
    "os.system": "tasks:\n  evil: {class: os.system}\n",
    "relative": "tasks:\n  evil: {class: .tasks.Evil}\n",
    "dunder": "tasks:\n  evil: {class: 'rc2_platform.tasks.__import__(\"os\")'}\n",
    "duplicate label": "tasks:\n  isr: {class: rc2_platform.tasks.isr.IsrTask}\n"
    "  isr: {class: rc2_platform.tasks.isr.IsrTask}\n",
    "alias bomb": BOMB + "\ntasks: {}\n",
    "recursive alias": "tasks: &t {a: *t}\n",
    "not a task": "tasks:\n  x: {class: rc2_platform.errors.Rc2Error}\n",
}


@pytest.fixture
def trap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module on sys.path whose top-level code leaves a mark if it is ever imported."""
    mark = tmp_path / "imported"
    (tmp_path / f"{TRAP_MODULE}.py").write_text(
        f"open({str(mark)!r}, 'w').write('ran')\nclass EvilTask: pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return mark


@pytest.mark.parametrize("name", list(PIPELINES))
def test_hostile_pipelines_are_refused_before_any_import(
    hostile_repo: Path, tmp_path: Path, trap: Path, name: str
) -> None:
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(PIPELINES[name])
    for args in (
        ["pipeline", "show", pipeline],
        ["qgraph", "build", hostile_repo, "--pipeline", pipeline, "--input", RUN,
         "--output", "u/hostile/out", "--save", tmp_path / "g.qgraph"],
    ):  # fmt: skip
        result = expect_cli_refusal(args)
        assert len(result.output) < 3000
    assert not trap.exists(), "a pipeline file made rc2 import a module outside the allow-list"
    assert TRAP_MODULE not in sys.modules


CONFIGS = {
    "butler.yaml duplicate": ("butler.yaml", "registry: {url: 'sqlite:///x'}\nregistry: {}\n"),
    "butler.yaml bomb": ("butler.yaml", BOMB + "\nregistry: {url: *a9}\n"),
    "manifest duplicate": ("calibs.yaml", "- {name: bias, name: dark}\n"),
    "manifest bomb": ("calibs.yaml", BOMB + "\n"),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_hostile_config_files_are_refused(hostile_repo: Path, tmp_path: Path, name: str) -> None:
    file_name, text = CONFIGS[name]
    if file_name == "butler.yaml":
        repo = tmp_path / "repo"
        repo.mkdir()
        (repo / file_name).write_text(text)
        result = expect_cli_refusal(["query-data-ids", repo, "instrument"])
    else:
        (tmp_path / file_name).write_text(text)
        result = expect_cli_refusal(["ingest-calibs", hostile_repo, tmp_path / file_name])
    assert file_name in result.output
    assert len(result.output) < 3000
