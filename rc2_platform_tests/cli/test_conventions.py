"""The conventions every ``rc2`` command follows (docs/cli.md), checked on the real group."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from rc2_platform.cli import COMMANDS, main
from rc2_platform.cli._group import LazyGroup
from rc2_platform.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    _take_repo_option,
    emit_rows,
    format_option,
    natural_key,
    sort_key,
)
from rc2_platform.errors import ConfigError

#: Modules that must not be imported to print ``rc2 --help`` (they cost seconds).
HEAVY = ("sqlalchemy", "numpy", "astropy", "scipy", "matplotlib", "rc2_platform.butler", "yaml")


def _leaf_commands() -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(main)
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert command is not None, f"rc2 command table: {name} does not load"
        stack: list[tuple[str, click.Command]] = [(name, command)]
        while stack:
            path, cmd = stack.pop()
            if isinstance(cmd, click.Group):
                stack.extend((f"{path} {n}", c) for n, c in cmd.commands.items())
            else:
                yield path, cmd


def test_exit_codes_are_the_documented_ones() -> None:
    assert (EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_PARTIAL, EXIT_FAILURE) == (0, 1, 2, 3, 4)
    text = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    for code in range(5):
        assert f"| {code} |" in text


def test_help_imports_no_heavy_module() -> None:
    code = (
        "import sys\n"
        "from rc2_platform.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout
    for name in ("create", "qgraph", "run", "validate", "demo"):
        assert name in out.stdout


def test_every_command_loads_has_json_and_help_on_every_option() -> None:
    missing_json, missing_help = [], []
    for path, cmd in _leaf_commands():
        if cmd.hidden:
            continue
        names = {p.name for p in cmd.params}
        if "as_json" not in names:
            missing_json.append(path)
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.hidden and not param.help:
                missing_help.append(f"{path} {param.opts[0]}")
        assert cmd.help, f"rc2 {path} has no help text"
    assert not missing_json, f"commands without --json: {missing_json}"
    assert not missing_help, f"options without help: {missing_help}"


def test_repo_is_the_first_argument_wherever_it_is_taken() -> None:
    for path, cmd in _leaf_commands():
        arguments = [p for p in cmd.params if isinstance(p, click.Argument)]
        names = [a.name for a in arguments]
        if "repo" in names:
            assert names[0] == "repo", f"rc2 {path}: REPO must come first, got {names}"
        assert not any(isinstance(p, click.Option) and "--repo" in p.opts for p in cmd.params), (
            f"rc2 {path} still has a --repo option"
        )


def test_the_command_table_names_existing_commands() -> None:
    assert COMMANDS and all(":" in target for target in COMMANDS.values())
    assert dict(_leaf_commands())  # every entry loads (asserted inside)


def test_repo_alias_moves_the_value_first_and_warns(tmp_path: Path) -> None:
    assert _take_repo_option(["g.qg", "--repo", "R", "--jobs", "2"]) == (
        ["g.qg", "--jobs", "2"],
        "R",
    )
    assert _take_repo_option(["--repo=R", "x"]) == (["x"], "R")
    assert _take_repo_option(["x", "--", "--repo", "R"]) == (["x", "--", "--repo", "R"], None)
    bad = tmp_path / "bootstrap.yaml"
    bad.write_text("version: 1\nskymap: {name: x, config: nope}\n")
    runner = CliRunner()
    old = runner.invoke(main, ["bootstrap", str(bad), "--repo", str(tmp_path / "r")])
    new = runner.invoke(main, ["bootstrap", str(tmp_path / "r"), str(bad)])
    assert old.exit_code == new.exit_code == EXIT_BAD_INPUT
    assert "deprecated" in old.stderr and "rc2 bootstrap" in old.stderr
    assert "deprecated" not in new.stderr
    assert old.stderr.splitlines()[-1] == new.stderr.splitlines()[-1]
    twice = runner.invoke(main, ["report", "--repo", "a", "--repo", "b", "RUN"])
    assert twice.exit_code == EXIT_USAGE and "twice" in twice.output


# --- the group's error handling and the output formats, on a group of test commands ----


@click.command("boom")
def boom() -> None:
    """Fail with an unexpected exception."""
    raise RuntimeError("kaput")


@click.command("refuse")
def refuse() -> None:
    """Fail with a user error."""
    raise ConfigError("value 'x' breaks rule y; do z")


@click.command("full")
def full() -> None:
    """Fail as a write to a full disk does."""
    raise OSError(28, "No space left on device", "/data/out/export.yaml")


LONG = "characterizeImage_" + "x" * 150


@click.command("rows")
@format_option
def rows(as_json: bool) -> None:
    """Print rows whose cells are wider than any terminal."""
    data = [{"name": LONG, "detector": d} for d in sorted([30, 7, 8, 9, 31], key=str)]
    data.sort(key=lambda r: sort_key([r["detector"]]))
    emit_rows(data, ["name", "detector"], as_json=as_json, title="wide")


_GROUP = LazyGroup(
    "t",
    commands_table={
        "boom": f"{__name__}:boom",
        "refuse": f"{__name__}:refuse",
        "full": f"{__name__}:full",
        "rows": f"{__name__}:rows",
    },
)


def test_errors_become_one_line_and_the_documented_exit_code() -> None:
    runner = CliRunner()
    crash = runner.invoke(_GROUP, ["boom"])
    assert crash.exit_code == EXIT_FAILURE and "Traceback" not in crash.output
    assert crash.stderr.strip().splitlines() == [
        "Error: unexpected RuntimeError: kaput (a bug: please report it; "
        "`rc2 --log-level DEBUG ...` shows the traceback)"
    ]
    refused = runner.invoke(_GROUP, ["refuse"])
    assert refused.exit_code == EXIT_BAD_INPUT
    assert refused.stderr == "Error: value 'x' breaks rule y; do z\n"
    # A full disk is a failure (4) with what to do, not "unexpected OSError (a bug)".
    full_disk = runner.invoke(_GROUP, ["full"])
    assert full_disk.exit_code == EXIT_FAILURE
    assert full_disk.stderr.splitlines() == [
        "Error: No space left on device writing /data/out/export.yaml: make room (free disk "
        "space, raise the quota or `ulimit -f`, or write elsewhere) and run the command "
        "again (`rc2 fsck REPO` checks a repository)"
    ]


def test_ctrl_c_is_one_line_and_exit_130_not_abort_and_1(tmp_path: Path) -> None:
    """SIGINT during a long command (a real process: `rc2 simulate rc2`, ~25 s): one
    line saying what to do and 130, not click's "Aborted!" and 1 ("nothing changed")."""
    import signal
    import time

    proc = subprocess.Popen(
        [Path(sys.executable).parent / "rc2", "simulate", "rc2", str(tmp_path / "sim")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(5)  # started (about 1 s), far from done
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1].decode()
    assert proc.wait(timeout=60) == EXIT_INTERRUPTED == 130, err
    assert "Traceback" not in err and "Aborted!" not in err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert errors == [
        "Error: interrupted (Ctrl-C): what finished is kept, the rest was not done; run the "
        "command again to finish (`rc2 run ... --resume` for a RUN; `rc2 fsck REPO` checks "
        "the files)"
    ]


def test_tables_are_whole_when_captured_and_sorted_numerically() -> None:
    runner = CliRunner()
    table = runner.invoke(_GROUP, ["rows"])
    assert table.exit_code == 0
    assert table.stdout.count(LONG) == 5 and "…" not in table.stdout
    detectors = [line.split()[-1] for line in table.stdout.splitlines() if LONG in line]
    assert detectors == ["7", "8", "9", "30", "31"]
    as_csv = runner.invoke(_GROUP, ["rows", "--format", "csv"])
    parsed = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["detector"] for r in parsed] == ["7", "8", "9", "30", "31"]
    assert parsed[0]["name"] == LONG
    as_json = runner.invoke(_GROUP, ["rows", "--json"])
    assert json.loads(as_json.stdout)[0] == {"name": LONG, "detector": 7}
    both = runner.invoke(_GROUP, ["rows", "--json", "--format", "csv"])
    assert both.exit_code == EXIT_USAGE


@pytest.mark.parametrize(
    ("values", "expected"),
    [([30, 7, 9], [7, 9, 30]), (["b", 2, None, "a"], [None, 2, "a", "b"])],
)
def test_sort_key_orders_integers_numerically(values: list, expected: list) -> None:
    assert sorted(values, key=lambda v: sort_key([v])) == expected


def test_natural_key_orders_numbers_inside_names() -> None:
    names = ["step1_HSC_1000", "step1_HSC_998", "step10", "step2"]
    assert sorted(names, key=natural_key) == ["step1_HSC_998", "step1_HSC_1000", "step2", "step10"]
