"""The demo's graph step and docs/demo.md's command-line equivalent, on the tiny survey."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from rc2_platform.cli import main
from rc2_platform.demo import DEMO_RUN, DemoSummary, build_demo_graph
from rc2_platform.graph import QuantumGraph, load_graph, save_graph
from rc2_platform.ingest import bootstrap, load_bootstrap_config
from rc2_platform.simulate import SimulationResult

pytestmark = pytest.mark.slow

DOCS = Path(__file__).parents[2] / "docs" / "demo.md"


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory, tiny_survey: SimulationResult) -> Path:
    root = tmp_path_factory.mktemp("demo")
    bootstrap(tiny_survey.bootstrap, root / "repo", progress=False)
    return root


def _summary(root: Path) -> DemoSummary:
    repo = root / "repo"
    return DemoSummary(root / "survey", repo, repo / "_graphs" / "demo.qgraph", DEMO_RUN)


def test_a_second_demo_keeps_the_graph_and_an_empty_one_is_rebuilt(
    tiny_repo: Path, tiny_survey: SimulationResult
) -> None:
    config = load_bootstrap_config(tiny_survey.bootstrap)
    said: list[str] = []
    first = _summary(tiny_repo)
    build_demo_graph(first, config, said.append)
    built = first.graph.read_bytes()
    assert len(load_graph(first.graph)) == 438
    again = _summary(tiny_repo)
    build_demo_graph(again, config, said.append)
    assert again.graph.read_bytes() == built and "keeping" in said[-1]
    assert again.quanta == first.quanta
    # What the old demo left behind on a second run: an empty graph of the demo RUN.
    save_graph(QuantumGraph([], [], output_run=DEMO_RUN, input_collections=[]), first.graph)
    repaired = _summary(tiny_repo)
    build_demo_graph(repaired, config, said.append)
    assert len(load_graph(repaired.graph)) == 438 and "building it again" in said[-2]


def _docs_command(step: str) -> str:
    row = next(line for line in DOCS.read_text().splitlines() if line.startswith(f"| {step} |"))
    return re.findall(r"`([^`]+)`", row)[-1]


def test_the_documented_command_line_builds_the_demo_graph(
    tiny_repo: Path, tiny_survey: SimulationResult
) -> None:
    build_demo_graph(_summary(tiny_repo), load_bootstrap_config(tiny_survey.bootstrap), print)
    command = _docs_command("graph").replace("DIR", str(tiny_repo))
    args = shlex.split(command)
    assert args[:3] == ["rc2", "qgraph", "build"]
    args[args.index("--output") + 1] = "u/docs/check"  # the demo RUN may exist already
    result = CliRunner().invoke(main, [*args[1:], "--json"])
    assert result.exit_code == 0, result.output
    graph = load_graph(tiny_repo / "g.qgraph")
    demo = load_graph(tiny_repo / "repo" / "_graphs" / "demo.qgraph")
    assert len(graph) == len(demo) == 438
    assert graph.counts_by_task() == demo.counts_by_task()
    # Without the patch restriction the graph covers patches nothing was simulated in.
    where = args.index("--where") + 1
    args[where] = args[where].split(" AND patch")[0]
    args[args.index("--save") + 1] = str(tiny_repo / "all.qgraph")
    wide = CliRunner().invoke(main, args[1:])
    assert wide.exit_code == 0, wide.output
    assert len(load_graph(tiny_repo / "all.qgraph")) == 496
