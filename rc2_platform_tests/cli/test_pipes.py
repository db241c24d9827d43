"""Every table command piped into a file: nothing cut, integers in numeric order.

Tables are printed full width when stdout is not a terminal. Each command that takes
``--format`` has a recipe here (test_every_table_command_has_a_recipe fails otherwise);
the outputs are captured as a pipe would see them, with ``COLUMNS=40`` so a table that
followed the terminal width would be cut, and one command goes through a real shell
pipe into a file.
"""

from __future__ import annotations

import datetime
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from rc2_platform.butler import Butler
from rc2_platform.cli import main
from rc2_platform.execution.runner import RunOptions, run_graph
from rc2_platform.ingest import bootstrap
from rc2_platform.server.tokens import TokenStore, utcnow
from rc2_platform.simulate import SimulationResult
from rc2_platform_tests.cli.conftest import DETECTORS, LONG_TYPE, RUN
from rc2_platform_tests.execution.helpers import make_config, make_graph, make_repo

pytestmark = pytest.mark.slow

#: Table commands not piped here, and why.
EXEMPT = {"validate": "needs a processed RUN; its table goes through the same emit_rows"}


def _table_commands() -> set[str]:
    found = set()
    ctx = click.Context(main)
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        subs = command.commands.items() if isinstance(command, click.Group) else [("", command)]
        for sub, cmd in subs:
            if any(p.name == "output_format" for p in cmd.params):
                found.add(f"{name} {sub}".strip())
    return found


@pytest.fixture(scope="module")
def places(
    tmp_path_factory: pytest.TempPathFactory, small_repo: Path, tiny_survey: SimulationResult
) -> dict[str, Path]:
    """The small repository, a bootstrapped tiny repository with a graph, a finished run."""
    root = tmp_path_factory.mktemp("pipes")
    tiny = root / "tiny"
    bootstrap(tiny_survey.bootstrap, tiny, progress=False)
    run_repo = root / "run"
    butler, raws = make_repo(run_repo)
    butler.close()
    make_graph(root / "g.qgraph", raws)
    run_graph(root / "g.qgraph", run_repo, config=make_config(), options=RunOptions())
    (root / "none.yaml").write_text("[]\n")
    TokenStore.for_repository(tiny).create(
        "pipes-reader", [LONG_SCOPE], utcnow() + datetime.timedelta(days=1)
    )
    return {"small": small_repo, "tiny": tiny, "survey": tiny_survey.root,
            "bootstrap": tiny_survey.bootstrap, "run": run_repo, "root": root}  # fmt: skip


#: A token scope long enough to wrap in a 40-column terminal.
LONG_SCOPE = "HSC/runs/RC2/w_2026_48/DM-99999/*"

Recipe = Callable[[dict[str, Path]], list[str]]

#: command -> (arguments, strings that must appear whole on one line).
RECIPES: dict[str, tuple[Recipe, list[str]]] = {
    "dataset-types": (lambda p: [str(p["small"])], [LONG_TYPE]),
    "query-datasets": (lambda p: [str(p["small"]), LONG_TYPE], [RUN]),
    "query-data-ids": (lambda p: [str(p["small"]), "detector", "visit"], []),
    "query-dimension-records": (lambda p: [str(p["small"]), "detector"], []),
    "collections list": (lambda p: ["collections", "list", str(p["small"])], [RUN]),
    "remove-runs": (lambda p: [str(p["small"]), RUN, "--dry-run"], [RUN]),
    "prune-datasets": (lambda p: [str(p["small"]), "-c", RUN, "--dry-run"], [LONG_TYPE, RUN]),
    "retrieve-artifacts": (
        lambda p: [str(p["small"]), str(p["root"] / "artifacts"), "-c", RUN, "--dry-run"],
        [LONG_TYPE, RUN],
    ),
    "certify-calibrations": (
        lambda p: [str(p["tiny"]), "HSC/calib/run/20160101", "u/pipes/a_long_calib_name", "bias"],
        ["HSC/calib/run/20160101"],
    ),
    "decertify": (
        lambda p: [
            str(p["tiny"]),
            "HSC/calib",
            "bias",
            "--begin-date",
            "2016-02-01",
            "--end-date",
            "2016-02-02",
            "--dry-run",
        ],
        ["[2016-02-02T00:00:00.000, 2016-03-20T00:00:00.000)"],
    ),
    "tokens list": (lambda p: ["tokens", "list", str(p["tiny"])], [LONG_SCOPE, "pipes-reader"]),
    "ingest-raws": (lambda p: [str(p["tiny"]), str(p["survey"] / "raw")], ["HSC/raw/all"]),
    "define-visits": (lambda p: [str(p["tiny"])], ["visits"]),
    "register-instrument": (lambda p: [str(p["tiny"])], ["instrument"]),
    "register-skymap": (
        lambda p: [str(p["tiny"]), "--name", "hsc_rings_v1_tiny", "--tract", "9813"],
        ["skymap"],
    ),
    # Re-ingesting the bootstrap's calibrations is refused as overlapping (hardening's
    # issue), so an empty manifest here.
    "ingest-calibs": (lambda p: [str(p["tiny"]), str(p["root"] / "none.yaml")], ["HSC/calib"]),
    "ingest-refcats": (lambda p: [str(p["tiny"]), str(p["bootstrap"])], ["refcats"]),
    "ingest-masks": (lambda p: [str(p["tiny"]), str(p["bootstrap"])], ["masks"]),
    "qgraph build": (
        lambda p: [
            "qgraph",
            "build",
            str(p["tiny"]),
            "--pipeline",
            "DRP-RC2#step1",
            "--input",
            "HSC/defaults",
            "--output",
            "u/pipes/a_long_output_run_name",
            "--where",
            "visit = 1012",
            "--save",
            str(p["root"] / "step1.qgraph"),
        ],
        ["characterizeImage"],
    ),  # fmt: skip
    "qgraph show": (
        lambda p: ["qgraph", "show", str(p["root"] / "g.qgraph"), "--clusters"],
        ["a_HSC_0"],
    ),
    "report": (lambda p: [str(p["run"]), "u/test/run1"], ["peak_memory_mb"]),
    "provenance": (lambda p: [str(p["run"]), "u/test/run1"], ["exception_type"]),
    "runs": (lambda p: [str(p["run"])], ["u/test/run1", "succeeded"]),
    "simulate": (
        lambda p: [
            "rc2",
            str(p["root"] / "sim"),
            "--scale",
            "0.02",
            "--max-detectors",
            "2",
            "--tracts",
            "9615",
        ],
        ["bootstrap.yaml"],
    ),  # fmt: skip
}


def test_every_table_command_has_a_recipe() -> None:
    assert _table_commands() == set(RECIPES) | set(EXEMPT)


def _args(name: str, recipe: Recipe, p: dict[str, Path]) -> list[str]:
    args = recipe(p)
    return args if " " in name else [name, *args]


def test_table_commands_piped_are_never_cut(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    runner = CliRunner()
    for name, (recipe, whole) in RECIPES.items():
        result = runner.invoke(main, _args(name, recipe, places))
        assert result.exit_code == 0, f"rc2 {name}: {result.output}"
        out = result.stdout
        assert out.strip(), f"rc2 {name} printed no table"
        assert "…" not in out and "..." not in out, f"rc2 {name} cut a cell:\n{out}"
        padded = [line for line in out.splitlines() if line != line.rstrip()]
        assert not padded, f"rc2 {name}: trailing blanks in {padded}"
        for text in whole:
            assert any(text in line for line in out.splitlines()), f"rc2 {name}: {text} cut"
        header = next(line for line in out.splitlines() if line.strip())
        assert len(out.splitlines()[1:]) >= 1, header


def test_uuids_and_detectors_survive_a_real_pipe_into_a_file(small_repo: Path) -> None:
    out = small_repo.parent / "datasets.txt"
    rc2 = shutil.which("rc2", path=str(Path(sys.executable).parent))
    assert rc2 is not None
    subprocess.run(
        f"COLUMNS=40 '{rc2}' query-datasets '{small_repo}' {LONG_TYPE} | cat > '{out}'",
        shell=True,
        check=True,
    )
    lines = out.read_text().splitlines()
    header = next(line.split() for line in lines if line.split()[:1] == ["run"])
    rows = [line.split() for line in lines if RUN in line]
    assert len(rows) == 2 * len(DETECTORS)
    uuid = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    assert all(uuid.match(row[-1]) for row in rows)
    with Butler(small_repo) as butler:
        ids = {str(r.id) for r in butler.query_datasets(LONG_TYPE, collections=[RUN])}
    assert {row[-1] for row in rows} == ids
    columns = [header.index("detector"), header.index("visit")]
    order = [tuple(int(row[i]) for i in columns) for row in rows]
    assert header[0] == "run" and header[-1] == "id"
    assert order == sorted(order) and order[0] == (7, 20)  # numeric: 7 < 30, 20 < 100


def test_integer_dimensions_sort_numerically_in_every_format(small_repo: Path) -> None:
    runner = CliRunner()
    table = runner.invoke(main, ["query-data-ids", str(small_repo), "detector"]).stdout
    assert [int(x) for x in re.findall(r"HSC\s+(\d+)", table)] == sorted(DETECTORS)
    csv = runner.invoke(main, ["query-dimension-records", str(small_repo), "detector",
                               "--format", "csv"]).stdout  # fmt: skip
    detectors = [int(line.split(",")[1]) for line in csv.splitlines()[1:]]
    assert detectors == sorted(DETECTORS)
