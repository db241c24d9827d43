"""``rc2 qgraph build`` / ``rc2 qgraph show`` on the mini repository (SQLite)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rc2_platform.butler import Butler
from rc2_platform.cli import main
from rc2_platform.graph import load_graph
from rc2_platform_tests.graph._mini_repo import INPUTS, fill_mini_repo


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A butler repository with the mini data, and a graph file built by the CLI."""
    root = tmp_path_factory.mktemp("cli")
    with Butler.create(root / "repo") as butler:
        fill_mini_repo(butler.registry)
    out = root / "g.qgraph"
    args = ["qgraph", "build", str(root / "repo"), "--pipeline", "DRP-RC2", "--output", "out",
            "--where", "skymap = :sm AND tract = :t", "--bind", "sm=rings", "--bind", "t=0",
            "--save", str(out), "--json"]  # fmt: skip
    for coll in INPUTS:
        args += ["--input", coll]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {r["task"]: r["pruned"] for r in rows}["isr"] == 1
    return root, out


def test_build_writes_a_loadable_graph(built: tuple[Path, Path]) -> None:
    _, out = built
    graph = load_graph(out)
    assert graph.counts_by_task()["isr"] == 7
    assert graph.metadata["pipeline"] == "DRP-RC2"
    assert graph.metadata["bind"] == {"sm": "rings", "t": 0}


def test_build_subset_and_bad_input_exit_nonzero(built: tuple[Path, Path]) -> None:
    root, _ = built
    base = ["qgraph", "build", str(root / "repo"), "--input", INPUTS[0], "--output", "o2",
            "--save", str(root / "s.qgraph")]  # fmt: skip
    result = CliRunner().invoke(
        main, [*base, "--pipeline", "DRP-RC2#step1", "--where", "tract = 0"]
    )
    assert result.exit_code == 1
    assert "Error: the graph has no quanta" in result.stderr and "no bias" in result.stderr
    assert "Traceback" not in result.output
    result = CliRunner().invoke(main, [*base, "--pipeline", "DRP-RC2", "--where", "tract = = 0"])
    assert result.exit_code == 1 and "where" in result.stderr.lower()


def test_show_text_json_dot_png_and_quantum(built: tuple[Path, Path]) -> None:
    root, out = built
    runner = CliRunner()
    text = runner.invoke(main, ["qgraph", "show", str(out)])
    assert text.exit_code == 0, text.output
    assert "  characterizeImage  [7]  <- isr (7)" in text.stdout
    lines = text.stdout.splitlines()
    assert lines[0] == f"QuantumGraph {out}" and "quanta in 11 tasks" in lines[1]
    assert not any(line.rstrip().endswith("->") for line in lines)
    doc = json.loads(runner.invoke(main, ["qgraph", "show", str(out), "--json"]).stdout)
    assert doc["counts"]["mergeDetections"] == 4 and doc["n_quanta"] == sum(doc["counts"].values())
    dot = runner.invoke(main, ["qgraph", "show", str(out), "--dot"]).stdout
    assert dot.startswith("digraph") and '"isr" -> "characterizeImage" [label="7"];' in dot
    png = root / "dag.png"
    assert runner.invoke(main, ["qgraph", "show", str(out), "--png", str(png)]).exit_code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    one = json.loads(
        runner.invoke(main, ["qgraph", "show", str(out), "--quantum", "0", "--json"]).stdout
    )
    assert one[0]["task"] == "isr" and one[0]["inputs"]["ccd_exposure"][0]["dataset_type"] == "raw"
    bad = runner.invoke(main, ["qgraph", "show", str(out), "--quantum", "99999"])
    assert bad.exit_code == 1 and "asked for 99999" in bad.stderr


def test_show_lists_clusters_and_shows_one(built: tuple[Path, Path]) -> None:
    _, out = built
    runner = CliRunner()
    listed = json.loads(
        runner.invoke(main, ["qgraph", "show", str(out), "--clusters", "--json"]).stdout
    )
    assert listed and {r["stage"] for r in listed} >= {"step1", "step2", "step3"}
    assert sum(r["quanta"] for r in listed) == load_graph(out).__len__()
    first = listed[0]
    quanta = json.loads(
        runner.invoke(
            main, ["qgraph", "show", str(out), "--cluster", first["cluster"], "--json"]
        ).stdout
    )
    assert len(quanta) == first["quanta"]
    assert {q["task"] for q in quanta} == {t.split()[0] for t in first["tasks"].split(", ")}
    summary = json.loads(runner.invoke(main, ["qgraph", "show", str(out), "--json"]).stdout)
    assert summary["clusters"][first["cluster"]] == first["quanta"]
    bad = runner.invoke(main, ["qgraph", "show", str(out), "--cluster", "nope"])
    assert bad.exit_code == 1 and "--clusters" in bad.stderr and "'nope'" in bad.stderr


def _inside(point: tuple[float, float], centre: tuple[float, float]) -> bool:
    from rc2_platform.graph.layout import NODE_HEIGHT, NODE_WIDTH

    return (
        abs(point[0] - centre[0]) < NODE_WIDTH / 2 and abs(point[1] - centre[1]) < NODE_HEIGHT / 2
    )


def test_dag_layout_keeps_every_edge_visible(built: tuple[Path, Path]) -> None:
    """No edge crosses a task box it does not connect, and no two edges share a segment."""
    from rc2_platform.graph.layout import NODE_HEIGHT, layout_dag

    graph = load_graph(built[1])
    labels, edges = [t.label for t in graph.tasks], graph.task_edges()
    layout = layout_dag(labels, edges)
    assert set(layout.edges) == set(edges) and set(layout.nodes) == set(labels)
    assert any(len(points) > 2 for points in layout.edges.values())  # skip edges are routed
    segments = set()
    for (p, c), points in layout.edges.items():
        assert points[0][1] == layout.nodes[p][1] - NODE_HEIGHT / 2  # leaves the producer's bottom
        assert points[-1][1] == layout.nodes[c][1] + NODE_HEIGHT / 2  # enters the consumer's top
        for a, b in zip(points, points[1:], strict=False):
            assert (a, b) not in segments, f"edge {p}->{c} overlaps another"
            segments.add((a, b))
            for t in (i / 50 for i in range(1, 50)):
                point = (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))
                hit = [n for n, centre in layout.nodes.items() if _inside(point, centre)]
                assert not hit, f"edge {p}->{c} runs through {hit}"
