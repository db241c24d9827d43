"""Hostile task classes: a pipeline's or a graph's ``class:`` is checked before any import.

A module whose import writes a marker file sits on ``sys.path``; every case that names it
(or anything outside the allow-list of rc2_platform/pipeline/task_modules.py) must be
refused with one line naming the file, the task and the rule, and the marker must not exist.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
import yaml

from rc2_platform.butler import Butler
from rc2_platform.errors import PipelineError, Rc2Error
from rc2_platform.execution.executor import PreparedTask
from rc2_platform.execution.job import run_cluster
from rc2_platform.graph import TaskSummary
from rc2_platform.pipeline import Pipeline, shipped_pipelines, task_modules
from rc2_platform_tests.butler.conftest import snapshot
from rc2_platform_tests.execution.helpers import make_graph, make_repo
from rc2_platform_tests.hostile.conftest import RUN, expect_cli_refusal, tally

ISR = "rc2_platform.tasks.isr.IsrTask"


@pytest.fixture
def evil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A module on sys.path whose import writes a marker file: (module name, marker)."""
    name = f"evil_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "MARKER"
    code = f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
    code += "from rc2_platform.tasks.isr import IsrTask as EvilTask\n"
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / f"{name}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delenv(task_modules.TASK_MODULES_ENV, raising=False)
    yield name, marker
    sys.modules.pop(name, None)


def _pipeline(path: Path, cls: object, extra: dict[str, object] | None = None) -> Path:
    doc = {"description": "hostile", "tasks": {"isr": {"class": cls}, **(extra or {})}}
    path.write_text(yaml.safe_dump(doc))
    return path


def _hostile_classes(evil_name: str) -> list[str]:
    return [
        f"{evil_name}.EvilTask",
        "os.system",
        "subprocess.Popen",
        "builtins.eval",
        "posix.system",
        "rc2_platform.tasksevil.EvilTask",  # a prefix without the dot
        "rc2_platform.execution.stand_in_evil.Task",
        "rc2_platform.execution.runner.RunOptions",
        "rc2_platform.cli.main",
        "rc2_platform.tasks",  # module rc2_platform, class 'tasks'
        "rc2_platform.tasks..isr.IsrTask",
        ".rc2_platform.tasks.isr.IsrTask",
        "rc2_platform.tasks.isr.IsrTask; import os",
        "rc2_platform/tasks/isr.IsrTask",
        "__import__('os').system",
        "rc2_platform.tasks.isr.IsrTask\nos.system",
        "IsrTask",
        "",
        " ",
        f"rc2_platform.tasks.{evil_name}.EvilTask",  # allowed package, missing module
        "rc2_platform.tasks.isr.np",  # allowed module, not a class
        "rc2_platform.tasks.isr.NoSuchTask",
    ]


N_CLASSES = len(_hostile_classes("x"))


@pytest.mark.parametrize("index", range(N_CLASSES))
def test_pipeline_show_refuses_class_and_imports_nothing(
    index: int, evil: tuple[str, Path], tmp_path: Path
) -> None:
    name, marker = evil
    cls = _hostile_classes(name)[index]
    path = _pipeline(tmp_path / "pipe.yaml", cls)
    result = expect_cli_refusal(["pipeline", "show", path])
    assert str(path) in result.output
    assert not marker.exists()
    assert name not in sys.modules


@pytest.mark.parametrize("cls", [1, 2.5, ["os", "system"], {"a": "b"}, None, True])
def test_pipeline_refuses_class_of_wrong_type(cls: object, tmp_path: Path) -> None:
    path = _pipeline(tmp_path / "pipe.yaml", cls)
    expect_cli_refusal(["pipeline", "show", path])


def test_library_names_file_label_and_rule(evil: tuple[str, Path], tmp_path: Path) -> None:
    name, marker = evil
    path = _pipeline(tmp_path / "pipe.yaml", f"{name}.EvilTask")
    with pytest.raises(PipelineError) as info:
        Pipeline.from_yaml(path)
    message = str(info.value)
    ok = (
        "\n" not in message
        and str(path) in message
        and "'isr'" in message
        and "not in an allowed task module" in message
    )
    tally("clean" if ok else "traceback")
    assert ok, message
    assert not marker.exists()


def test_class_inherited_through_imports_is_checked(evil: tuple[str, Path], tmp_path: Path) -> None:
    name, marker = evil
    base = _pipeline(tmp_path / "base.yaml", f"{name}.EvilTask")
    child = tmp_path / "child.yaml"
    child.write_text(yaml.safe_dump({"description": "child", "imports": [str(base)]}))
    expect_cli_refusal(["pipeline", "show", child], match="not in an allowed task module")
    assert not marker.exists()


def test_qgraph_build_refuses_and_writes_nothing(
    evil: tuple[str, Path], hostile_repo: Path, butler: Butler, tmp_path: Path
) -> None:
    name, marker = evil
    path = _pipeline(tmp_path / "pipe.yaml", f"{name}.EvilTask")
    out = tmp_path / "g.qgraph"
    before = snapshot(butler)
    args = ["qgraph", "build", hostile_repo, "--pipeline", path, "--input", RUN]
    expect_cli_refusal([*args, "--output", "u/evil/run", "--save", out])
    assert not marker.exists()
    assert not out.exists()
    assert snapshot(butler) == before


# --- graph files: workers check every class before importing any ----------------------


def test_prepared_task_refuses_graph_class(evil: tuple[str, Path]) -> None:
    name, marker = evil
    summary = TaskSummary("evil", f"{name}.EvilTask", ("instrument",), {})
    with pytest.raises(PipelineError, match="graph g.qgraph: task 'evil'") as info:
        PreparedTask(summary, "graph g.qgraph")
    tally("clean" if "\n" not in str(info.value) else "traceback")
    assert not marker.exists()


@pytest.mark.parametrize("label", ["a", "c"])
def test_worker_refuses_graph_with_hostile_class(
    label: str, evil: tuple[str, Path], tmp_path: Path
) -> None:
    name, marker = evil
    _, raws = make_repo(tmp_path / "repo")
    graph = tmp_path / "g.qgraph"
    make_graph(graph, raws, classes={label: f"{name}.EvilTask"})
    # quantum 0 is task 'a': the class of 'c' is refused too, before 'a' is imported.
    try:
        run_cluster(graph, "a", tmp_path / "repo", quanta=[0], result_path=tmp_path / "r.json")
    except Rc2Error as exc:
        outcome = "clean" if "not in an allowed task module" in str(exc) else "traceback"
    else:
        outcome = "wrong acceptance"
    tally(outcome)
    assert outcome == "clean"
    assert not marker.exists()
    assert not (tmp_path / "r.json").exists()


def test_rc2_run_refuses_graph_with_hostile_class(evil: tuple[str, Path], tmp_path: Path) -> None:
    name, marker = evil
    _, raws = make_repo(tmp_path / "repo")
    graph = tmp_path / "g.qgraph"
    make_graph(graph, raws, classes={"b": f"{name}.EvilTask"})
    expect_cli_refusal(["run", tmp_path / "repo", graph], match="not in an allowed task module")
    assert not marker.exists()


# --- extending the allow-list ----------------------------------------------------------


def test_environment_extends_the_allow_list(
    evil: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, marker = evil
    monkeypatch.setenv(task_modules.TASK_MODULES_ENV, f"other.pkg,{name}")
    pipeline = Pipeline.from_yaml(_pipeline(tmp_path / "pipe.yaml", f"{name}.EvilTask"))
    assert list(pipeline.task_defs) == ["isr"]
    assert marker.exists()  # the positive control: the marker does work


def test_entry_point_extends_the_allow_list(
    evil: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, marker = evil
    dist = tmp_path / "site" / "evil_tasks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: evil-tasks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[rc2_platform.tasks]\nevil = {name}\n")
    task_modules._entry_point_modules.cache_clear()
    try:
        assert name in task_modules.allowed_task_modules()
        assert not marker.exists()  # reading entry points imports nothing
        Pipeline.from_yaml(_pipeline(tmp_path / "pipe.yaml", f"{name}.EvilTask"))
        assert marker.exists()
    finally:
        task_modules._entry_point_modules.cache_clear()


def test_shipped_pipelines_pass_the_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(task_modules.TASK_MODULES_ENV, raising=False)
    assert shipped_pipelines()
    for name in shipped_pipelines():
        assert Pipeline.from_yaml(name).task_defs


# --- hostile contracts (evaluated while the pipeline loads) ------------------------------

CONTRACTS = {
    "string-bomb": "'a' * 1000000 * 1000000 == 'a'",
    "tuple-bomb": "(1, 2) * 1000000000 == (1,)",
    "deep-not": "not " * 241 + "True",  # parsed and evaluated: False
    "too-long": "1 + " * 5000 + "1 == 0",
    "deep-parens": "(" * 300 + "1" + ")" * 300 + " == 0",
    "call": "isr.__class__.__subclasses__()",
    "private": "isr._secret == 1",
    "lambda": "(lambda: 1)() == 1",
    "import": "__import__('os').system('true') == 0",
    "divide-by-zero": "1 / 0 == 1",
    "overflow": "10000000000 * 1e308 * 1e308 == 1",
    "unknown-label-attr": "isr.no_such_field == 1",
    "false": "1 == 2",
}


@pytest.mark.parametrize("name", list(CONTRACTS))
def test_hostile_contract_refused(name: str, tmp_path: Path) -> None:
    path = _pipeline(tmp_path / "pipe.yaml", ISR)
    doc = yaml.safe_load(path.read_text())
    doc["contracts"] = [{"contract": CONTRACTS[name], "msg": "hostile"}]
    path.write_text(yaml.safe_dump(doc))
    result = expect_cli_refusal(["pipeline", "show", path])
    assert len(result.output) < 1000


# --- resource:// locations import their package: checked like task classes --------------


def _resource_locations(evil_name: str) -> list[str]:
    return [
        f"resource://{evil_name}/pipe.yaml",
        "resource://os/pipe.yaml",
        "resource://rc2_platform/../../../../etc/passwd",
        "resource://rc2_platform//etc/passwd",
        "resource://rc2_platform/pipelines/NO-SUCH.yaml",
        "resource://rc2_platform/pipelines",
        "resource://rc2_platform..x/p.yaml",
        "resource:///p.yaml",
    ]


@pytest.mark.parametrize("index", range(len(_resource_locations("x"))))
@pytest.mark.parametrize("how", ["argument", "import"])
def test_resource_location_checked_before_import(
    index: int, how: str, evil: tuple[str, Path], tmp_path: Path
) -> None:
    name, marker = evil
    (tmp_path / "site" / "pipe.yaml").write_text("description: x\ntasks: {}\n")
    location = _resource_locations(name)[index]
    if how == "argument":
        expect_cli_refusal(["pipeline", "show", location])
    else:
        path = tmp_path / "child.yaml"
        path.write_text(yaml.safe_dump({"description": "child", "imports": [location]}))
        expect_cli_refusal(["pipeline", "show", path])
    assert not marker.exists()
    assert name not in sys.modules


def test_shipped_resource_location_still_loads() -> None:
    from rc2_platform.pipeline import DRP_RC2

    assert Pipeline.from_yaml(DRP_RC2).task_defs
