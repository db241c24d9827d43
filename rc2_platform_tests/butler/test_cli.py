"""The butler commands of ``rc2`` through click's CliRunner (SQLite, and one PostgreSQL run)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from rc2_platform.butler import Butler
from rc2_platform.cli import main
from rc2_platform.cli.butler_commands import parse_bind, split_collections
from rc2_platform.errors import ConfigError
from rc2_platform.registry import CollectionType
from rc2_platform_tests.butler.conftest import RUN, count_rows, dataset_files, populate
from rc2_platform_tests.databases import scratch_database


def rc2(*args: Any) -> Result:
    """Run ``rc2 ARGS`` and return the result (exceptions are not swallowed silently)."""
    return CliRunner().invoke(main, [str(a) for a in args])


def ok_json(*args: Any) -> Any:
    result = rc2(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def fails(*args: Any, match: str) -> Result:
    """Assert the command exits 1 with ``match`` in its message and no traceback."""
    result = rc2(*args)
    assert result.exit_code == 1, result.output
    assert match in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # a handled error, not a crash
    return result


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    """A populated SQLite repository with summaries in RUN and in a second run ``other``."""
    root = tmp_path / "repo"
    assert rc2("create", root).exit_code == 0
    with Butler(root) as b:
        populate(b.registry)
        b.registry.register_run("other")
        for v in (1, 2):
            for d in (0, 1):
                b.put(
                    {"v": v, "d": d},
                    "summary",
                    {"instrument": "HSC", "visit": v, "detector": d},
                    run=RUN,
                )
        b.put(
            {"other": True},
            "summary",
            {"instrument": "HSC", "visit": 1, "detector": 0},
            run="other",
        )
    yield root


# --- helpers ---------------------------------------------------------------------------------


def test_parse_bind_converts_numbers_and_refuses_garbage() -> None:
    assert parse_bind(["v=1228", "t=30.5", "b=g", "s=-3", "x=1a"]) == {
        "v": 1228,
        "t": 30.5,
        "b": "g",
        "s": -3,
        "x": "1a",
    }
    with pytest.raises(ConfigError, match="name=value"):
        parse_bind(["novalue"])
    assert split_collections(["a,b", "c", " d , "]) == ["a", "b", "c", "d"]


# --- create / dataset types ------------------------------------------------------------------


def test_create_and_refuse_to_overwrite(tmp_path: Path) -> None:
    rows = ok_json("create", tmp_path / "r")
    assert rows[0]["root"] == str(tmp_path / "r") and rows[0]["registry"].startswith("sqlite")
    assert (tmp_path / "r" / "butler.yaml").exists()
    fails("create", tmp_path / "r", match="already exists")


def test_commands_on_a_folder_that_is_not_a_repository(tmp_path: Path) -> None:
    for args in (
        ("dataset-types", tmp_path),
        ("query-datasets", tmp_path),
        ("query-data-ids", tmp_path, "visit"),
        ("query-dimension-records", tmp_path, "visit"),
        ("collections", "list", tmp_path),
        ("register-dataset-type", tmp_path, "x", "visit", "--storage-class", "Json"),
    ):
        fails(*args, match="no repository")
    assert list(tmp_path.iterdir()) == []


def test_register_dataset_type_and_list(repo: Path) -> None:
    rows = ok_json(
        "register-dataset-type",
        repo,
        "bias",
        "detector",
        "--storage-class",
        "Exposure",
        "--calibration",
    )
    assert rows == [
        {
            "name": "bias",
            "dimensions": ["instrument", "detector"],
            "storage_class": "Exposure",
            "calibration": True,
            "registered": True,
        }
    ]
    assert (
        ok_json(
            "register-dataset-type",
            repo,
            "bias",
            "detector",
            "instrument",
            "--storage-class",
            "Exposure",
            "--calibration",
        )[0]["registered"]
        is False
    )
    listed = {r["name"]: r for r in ok_json("dataset-types", repo)}
    assert listed["bias"]["calibration"] is True and "summary" in listed
    assert [r["name"] for r in ok_json("dataset-types", repo, "ca*")] == ["calexp"]
    table = rc2("dataset-types", repo)
    assert table.exit_code == 0 and "summary" in table.stdout
    fails(
        "register-dataset-type",
        repo,
        "bias",
        "visit",
        "--storage-class",
        "Exposure",
        match="cannot redefine",
    )
    fails("register-dataset-type", repo, "y", "vist", "--storage-class", "Exposure", match="vist")
    fails("register-dataset-type", repo, "y", "visit", "--storage-class", "Nope", match="Nope")
    assert "y" not in {r["name"] for r in ok_json("dataset-types", repo)}


# --- queries ---------------------------------------------------------------------------------


def test_query_datasets_collections_where_bind_and_find_all(repo: Path) -> None:
    all_rows = ok_json("query-datasets", repo)
    assert len(all_rows) == 5 and {r["dataset_type"] for r in all_rows} == {"summary"}
    first = ok_json("query-datasets", repo, "summary", "--collections", f"other,{RUN}")
    assert len(first) == 4
    assert [r["run"] for r in first if (r["visit"], r["detector"]) == (1, 0)] == ["other"]
    repeated = ok_json("query-datasets", repo, "summary", "-c", RUN, "-c", "other")
    assert [r["run"] for r in repeated if (r["visit"], r["detector"]) == (1, 0)] == [RUN]
    every = ok_json("query-datasets", repo, "summary", "-c", f"other,{RUN}", "--find-all")
    assert len(every) == 5
    bound = ok_json(
        "query-datasets",
        repo,
        "summary",
        "-c",
        RUN,
        "--where",
        "visit = :v AND band = 'g'",
        "--bind",
        "v=1",
    )
    assert {(r["visit"], r["detector"]) for r in bound} == {(1, 0), (1, 1)}
    table = rc2("query-datasets", repo, "summary", "-c", RUN)
    assert table.exit_code == 0 and RUN in table.stdout and "summary" in table.stdout


def test_query_datasets_bad_input_exits_1_and_changes_nothing(repo: Path) -> None:
    before = len(dataset_files(repo))
    result = fails(
        "query-datasets", repo, "summary", "--where", "visit = = 1", match="where-expression"
    )
    assert "^" in result.stderr  # the caret line is printed in full
    fails(
        "query-datasets",
        repo,
        "summary",
        "--where",
        "visit = 1; DROP TABLE dataset",
        match="where-expression",
    )
    fails("query-datasets", repo, "summary", "--where", "vist = 1", match="vist")
    fails("query-datasets", repo, "summary; DROP TABLE dataset", match="not registered")
    fails("query-datasets", repo, "summary", "-c", "nope", match="nope")
    fails(
        "query-datasets",
        repo,
        "summary",
        "--where",
        "visit = :v",
        "--bind",
        "v",
        match="name=value",
    )
    evil = ok_json(
        "query-datasets",
        repo,
        "summary",
        "--where",
        "band = :b",
        "--bind",
        "b=g'; DROP TABLE dataset; --",
    )
    assert evil == []
    assert len(ok_json("query-datasets", repo)) == 5
    assert len(dataset_files(repo)) == before


def test_query_data_ids_and_records(repo: Path) -> None:
    ids = ok_json("query-data-ids", repo, "visit", "--where", "band = :b", "--bind", "b=r")
    assert ids == [{"instrument": "HSC", "visit": 2}]
    assert len(ok_json("query-data-ids", repo, "visit", "detector")) == 4
    fails("query-data-ids", repo, "vist", match="vist")
    records = ok_json("query-dimension-records", repo, "visit", "--where", "visit = 1")
    assert len(records) == 1 and records[0]["physical_filter"] == "HSC-G"
    assert records[0]["timespan"] == {"begin_nsec": 100, "end_nsec": 130}
    assert len(records[0]["region"]) == 4 and records[0]["region"][0] == [0.0, 0.0]
    table = rc2("query-dimension-records", repo, "band")
    assert table.exit_code == 0 and "band" in table.stdout
    fails("query-dimension-records", repo, "nonesuch", match="nonesuch")
    fails("query-dimension-records", repo, "visit", "--where", "visit >", match="where-expression")


# --- collections -----------------------------------------------------------------------------


def test_collections_list_chain_tag_remove(repo: Path) -> None:
    assert ok_json("collections", "chain", repo, "chain", "other") == [
        {"name": "chain", "children": ["other"]}
    ]
    assert ok_json("collections", "chain", repo, "chain", RUN, "--mode", "extend")[0][
        "children"
    ] == ["other", RUN]
    assert ok_json("collections", "chain", repo, "chain", RUN, "--mode", "prepend")[0][
        "children"
    ] == [RUN, "other"]
    fails("collections", "chain", repo, "other", RUN, match="RUN")
    listed = {r["name"]: r for r in ok_json("collections", "list", repo)}
    assert listed["chain"] == {"name": "chain", "type": "CHAINED", "children": [RUN, "other"]}
    assert [r["name"] for r in ok_json("collections", "list", repo, "--type", "run")] == [
        RUN,
        "other",
    ]
    assert [r["name"] for r in ok_json("collections", "list", repo, "ch*")] == ["chain"]
    fails("collections", "list", repo, "--type", "bogus", match="bogus")

    tagged = ok_json(
        "collections", "tag", repo, "best", "summary", "-c", "chain", "--where", "detector = 1"
    )
    assert tagged == [{"collection": "best", "tagged": 2}]
    in_tag = ok_json("query-datasets", repo, "summary", "-c", "best")
    assert {(r["visit"], r["detector"]) for r in in_tag} == {(1, 1), (2, 1)}

    fails("collections", "remove", repo, "other", match="chain")  # still a child of chain
    assert rc2("collections", "chain", repo, "chain", RUN).exit_code == 0
    # No child (none given, or an empty value from an unset shell variable): refused, the
    # chain keeps its children instead of being redefined empty.
    for empty in ([], [""], [","]):
        refused = rc2("collections", "chain", repo, "chain", *empty)
        assert refused.exit_code == 2 and "chain is unchanged" in refused.output, refused.output
    assert ok_json("collections", "list", repo, "chain")[0]["children"] == [RUN]
    removed = ok_json("collections", "remove", repo, "other")
    assert removed == [{"removed": "other", "datasets": 1}]
    with Butler(repo) as b:
        assert b.registry.query_collections(types=[CollectionType.RUN]) == [RUN]
        assert count_rows(b, "dataset") == 4
    assert len(dataset_files(repo)) == 4
    table = rc2("collections", "list", repo)
    assert table.exit_code == 0 and "CHAINED" in table.stdout


def test_collection_chain_cycle_is_refused(repo: Path) -> None:
    assert rc2("collections", "chain", repo, "a", RUN).exit_code == 0
    assert rc2("collections", "chain", repo, "b", "a").exit_code == 0
    fails("collections", "chain", repo, "a", "b", match="cycle")
    assert ok_json("collections", "list", repo, "a")[0]["children"] == [RUN]


# --- PostgreSQL ------------------------------------------------------------------------------


def test_cli_on_postgresql_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RC2_DB_PASSWORD", raising=False)
    with scratch_database("postgresql", tmp_path) as url:
        root = tmp_path / "pgrepo"
        created = ok_json("create", root, "--registry-url", url)
        assert created[0]["registry"].startswith("postgresql")
        assert (
            ok_json(
                "register-dataset-type",
                root,
                "summary",
                "visit",
                "detector",
                "--storage-class",
                "StructuredDataDict",
            )[0]["registered"]
            is True
        )
        with Butler(root) as b:
            b.registry.insert_dimension_records("instrument", [{"instrument": "HSC"}])
            b.registry.insert_dimension_records("band", [{"band": "g"}])
            b.registry.insert_dimension_records(
                "physical_filter", [{"instrument": "HSC", "physical_filter": "HSC-G", "band": "g"}]
            )
            b.registry.insert_dimension_records("detector", [{"instrument": "HSC", "detector": 0}])
            b.registry.insert_dimension_records(
                "day_obs", [{"instrument": "HSC", "day_obs": 20200101}]
            )
            b.registry.insert_dimension_records(
                "visit",
                [
                    {
                        "instrument": "HSC",
                        "visit": 7,
                        "physical_filter": "HSC-G",
                        "day_obs": 20200101,
                    }
                ],
            )
            b.registry.register_run("r")
            b.put({"a": 1}, "summary", {"instrument": "HSC", "visit": 7, "detector": 0}, run="r")
        rows = ok_json(
            "query-datasets", root, "summary", "-c", "r", "--where", "visit = :v", "--bind", "v=7"
        )
        assert [(r["run"], r["visit"]) for r in rows] == [("r", 7)]
        fails(
            "query-datasets",
            root,
            "summary",
            "-c",
            "r",
            "--where",
            "visit = 'x' OR",
            match="where-expression",
        )
        assert ok_json("collections", "list", root) == [
            {"name": "r", "type": "RUN", "children": []}
        ]
