"""Error advice that works on the command line (one line, no Python-only hints)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from rc2_platform.cli import main
from rc2_platform.cli.common import EXIT_BAD_INPUT


def _fails(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "Traceback" not in result.output
    return result.stderr


def test_missing_bind_value_names_the_bind_option(small_repo: Path) -> None:
    err = _fails("query-data-ids", str(small_repo), "visit", "--where", "visit = :v")
    assert "--bind v=VALUE" in err and "bind=" in err.split("Python:")[1]


def test_removing_a_missing_collection_does_not_say_register_it(small_repo: Path) -> None:
    err = _fails("collections", "remove", str(small_repo), "no/such/run")
    assert "'no/such/run' does not exist" in err and "collections list" in err
    assert "register" not in err


def test_missing_dataset_type_points_to_the_listing(small_repo: Path) -> None:
    err = _fails("query-datasets", str(small_repo), "nope")
    assert "'nope' is not registered" in err and "rc2 dataset-types" in err


def test_a_missing_repository_says_how_to_create_one(tmp_path: Path) -> None:
    err = _fails("dataset-types", str(tmp_path / "none"))
    assert "rc2 create" in err and len(err.strip().splitlines()) == 1
