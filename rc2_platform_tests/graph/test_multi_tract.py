"""The graphs of the three RC2 tracts in one ``rc2 qgraph build``, counted per tract.

A slice of the header-only ``rc2`` preset (every tract, 1-2 visits per band, 8
detectors) is bootstrapped; one build over ``--tract 9615 --tract 9697,9813`` must hold
exactly the quanta of the three single-tract builds, and print them per tract.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from rc2_platform.cli import main
from rc2_platform.graph import load_graph
from rc2_platform.graph._report import counts_by_tract, tracts_of_quanta
from rc2_platform.ingest import bootstrap
from rc2_platform.simulate import simulate

TRACTS = (9615, 9697, 9813)
SINGLE_FRAME = ("isr", "characterizeImage", "calibrate")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("tracts")
    survey = simulate("rc2", root / "sim", scale=0.05, max_detectors=8)
    bootstrap(survey.bootstrap, root / "repo", progress=False)
    yield root / "repo"


def _build(repo: Path, out: Path, *args: str) -> list[dict]:
    result = CliRunner().invoke(
        main,
        ["qgraph", "build", str(repo), "--pipeline", "DRP-RC2", "--input", "HSC/defaults",
         "--output", f"u/test/{out.stem}", "--where", "skymap = 'hsc_rings_v1'",
         "--save", str(out), "--json", *args],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_three_tracts_in_one_build_are_the_three_single_builds(repo: Path, tmp_path: Path) -> None:
    rows = _build(repo, tmp_path / "all.qgraph", "--tract", "9615", "--tract", "9697,9813")
    single = {
        t: {r["task"]: r["quanta"] for r in _build(repo, tmp_path / f"t{t}.qgraph", "--tract", str(t))}
        for t in TRACTS
    }  # fmt: skip
    for row in rows:
        per_tract = {t: row[f"tract {t}"] for t in TRACTS}
        assert per_tract == {t: single[t][row["task"]] for t in TRACTS}, row["task"]
        # The tracts are far apart: no quantum works for two of them.
        assert row["quanta"] == sum(per_tract.values()), row["task"]
        assert all(n > 0 for n in per_tract.values()), row
    graph = load_graph(tmp_path / "all.qgraph")
    tracts = tracts_of_quanta(graph)
    assert all(len(t) == 1 for t in tracts)
    assert counts_by_tract(graph)[9697]["makeWarp"] == single[9697]["makeWarp"]
    assert {q.data_id["tract"] for q in graph.quanta if "tract" in q.data_id.dimensions} == set(
        TRACTS
    )


def test_a_tract_without_data_is_named(repo: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["qgraph", "build", str(repo), "--pipeline", "DRP-RC2", "--input", "HSC/defaults",
         "--output", "u/test/none", "--tract", "9615,1234", "--save",
         str(tmp_path / "g.qgraph")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "tract 1234: no quanta" in result.output
    bad = CliRunner().invoke(
        main,
        ["qgraph", "build", str(repo), "--pipeline", "DRP-RC2", "--input", "HSC/defaults",
         "--output", "u/test/bad", "--tract", "96x5", "--save", str(tmp_path / "b.qgraph")],
    )  # fmt: skip
    assert bad.exit_code == 1 and "--tract '96x5' is not a tract number" in bad.output
