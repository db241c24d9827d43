"""The data-management commands through click (SQLite, PostgreSQL): JSON, dry runs, refusals."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rc2_platform.butler import Butler
from rc2_platform_tests.butler.conftest import RUN, dataset_files, populate
from rc2_platform_tests.butler.test_admin import BIAS, CALIB, CALIB_RUN
from rc2_platform_tests.butler.test_cli import fails, ok_json, rc2
from rc2_platform_tests.databases import scratch_database


@pytest.fixture(params=("sqlite", "postgresql"))
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A repository with 4 summaries in RUN, bias for detectors 0/1 in CALIB_RUN.

    On SQLite and on PostgreSQL (registry on the server, files in ``tmp_path/repo``).
    """
    with scratch_database(request.param, tmp_path) as url:
        root = tmp_path / "repo"
        _make(root, None if url.startswith("sqlite") else url)
        yield root


def _make(root: Path, url: str | None) -> None:
    with Butler.create(root, registry_url=url) as b:
        populate(b.registry)
        b.registry.register_dataset_type(BIAS)
        b.registry.register_run(CALIB_RUN)
        for d in (0, 1):
            b.put({"bias": d}, "bias", {"instrument": "HSC", "detector": d}, run=CALIB_RUN)
            for v in (1, 2):
                data_id = {"instrument": "HSC", "visit": v, "detector": d}
                b.put({"v": v}, "summary", data_id, run=RUN)


def test_certify_decertify_and_the_calibration_run_removal_of_issue_11(repo: Path) -> None:
    rows = ok_json(
        "certify-calibrations", repo, CALIB_RUN, CALIB, "bias", "--begin-date", "2020-01-01"
    )
    assert sorted(r["detector"] for r in rows) == [0, 1]
    assert ok_json("collections", "chain", repo, "HSC/defaults", CALIB, RUN)[0]["children"] == [
        CALIB,
        RUN,
    ]
    # `collections remove` of the certified RUN: refused, with the user named.
    refused = fails("collections", "remove", repo, CALIB_RUN, match=f"CALIBRATION '{CALIB}'")
    assert "--unlink" in refused.stderr
    cut = ok_json(
        "decertify", repo, CALIB, "bias", "--begin-date", "2020-02-01", "--end-date",
        "2020-03-01", "--where", "detector = :d", "--bind", "d=1", "--dry-run",
    )  # fmt: skip
    assert [r["detector"] for r in cut] == [1] and len(cut[0]["after"]) == 2
    with Butler(repo) as b:
        assert len(b.registry.query_certifications(CALIB, "bias")) == 2  # dry run
    fails("decertify", repo, CALIB, "bias", "--end-date", "soon", match="--end-date 'soon'")
    # A dimension the bias lacks: one line, exit 1, nothing changed (not every bias).
    wrong = fails(
        "decertify", repo, CALIB, "bias", "--where", "visit = 1",
        match="--where 'visit = 1' constrains visit, which bias lacks (its dimensions: "
        "instrument, detector); constrain only those (nothing was changed)",
    )  # fmt: skip
    assert wrong.stderr.count("\n") == 1, wrong.stderr
    with Butler(repo) as b:
        assert len(b.registry.query_certifications(CALIB, "bias")) == 2
    assert len(ok_json("decertify", repo, CALIB, "bias")) == 2
    assert ok_json("collections", "remove", repo, CALIB_RUN) == [
        {"removed": CALIB_RUN, "datasets": 2}
    ]


def test_remove_runs_lists_chains_then_unlinks_them(repo: Path) -> None:
    rc2("collections", "chain", repo, "HSC/calib/all", CALIB_RUN)
    result = fails("remove-runs", repo, "HSC/calib/*", match="'HSC/calib/all'")
    assert "--unlink-from-chains" in result.stderr
    dry = ok_json("remove-runs", repo, "HSC/calib/*", "--unlink-from-chains", "--dry-run")
    assert dry[0]["datasets"] == 2 and dry[0]["dry_run"] is True
    assert len(dataset_files(repo)) == 6
    done = ok_json("remove-runs", repo, "HSC/calib/*", "--unlink-from-chains")
    assert done[0]["run"] == CALIB_RUN and done[0]["unlinked_from_chains"] == ["HSC/calib/all"]
    assert len(dataset_files(repo)) == 4
    text = rc2("remove-runs", repo, RUN, "--dry-run")
    assert text.exit_code == 0 and "would remove" in text.stdout and RUN in text.stdout


def test_prune_and_remove_dataset_type(repo: Path) -> None:
    fails("remove-dataset-type", repo, "summary", match=f"RUN(s) '{RUN}' (4)")
    pruned = ok_json("prune-datasets", repo, "-c", RUN, "-d", "summary", "--where", "visit = 2")
    assert pruned == [{"dataset_type": "summary", "run": RUN, "datasets": 2, "already_removed": 0}]
    assert ok_json("remove-dataset-type", repo, "summary", "--with-datasets", "--dry-run")[
        "datasets_by_run"
    ] == {RUN: 2}
    gone = rc2("remove-dataset-type", repo, "summary", "--with-datasets")
    assert gone.exit_code == 0 and "removed dataset type summary (2 dataset(s))" in gone.stdout
    assert len(dataset_files(repo)) == 2
    fails("remove-dataset-type", repo, "summary", match="not registered")


def test_retrieve_artifacts_zip_and_refusal(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rows = ok_json("retrieve-artifacts", repo, out, "-c", RUN, "--where", "visit = 1")
    assert len(rows) == 2 and all((out / r["path"]).is_file() for r in rows)
    fails("retrieve-artifacts", repo, out, "-c", RUN, match="already exist")
    zipped = tmp_path / "calib.zip"
    ok_json("retrieve-artifacts", repo, zipped, "-c", CALIB_RUN, "--zip")
    with zipfile.ZipFile(zipped) as zf:
        assert len(json.loads(zf.read("rc2_index.json"))["datasets"]) == 2
    fails(
        "retrieve-artifacts", repo, tmp_path / "b.zip", "-c", RUN, "--zip", "--transfer", "link",
        match="--zip copies",
    )  # fmt: skip


def test_commands_moving_data_refuse_a_where_on_a_dimension_a_type_lacks(
    repo: Path, tmp_path: Path
) -> None:
    """prune-datasets, retrieve-artifacts, export and transfer-datasets: ``visit = 1``
    with the biases (instrument, detector) searched is one line, exit 1, nothing
    changed or written (it joined visits and took every bias)."""
    line = (
        "--where 'visit = 1' constrains visit, which bias lacks (its dimensions: "
        "instrument, detector); constrain only those (nothing was changed)"
    )
    files = sorted(dataset_files(repo))
    target = tmp_path / "target"
    Butler.create(target).close()
    out = tmp_path / "out"
    for args in (
        ("prune-datasets", repo, "-c", f"{RUN},{CALIB_RUN}"),
        ("prune-datasets", repo, "-c", RUN, "-d", "summary,bias", "--dry-run"),
        ("retrieve-artifacts", repo, out, "-c", CALIB_RUN),
        ("export", repo, tmp_path / "e.yaml", "-c", CALIB_RUN, "--with-files", out),
        ("transfer-datasets", repo, target, "-c", RUN, "--dataset-types", "summary,bias"),
    ):
        wrong = fails(*args, "--where", "visit = 1", match=line)
        assert wrong.stderr.count("\n") == 1, wrong.stderr
    assert sorted(dataset_files(repo)) == files
    assert not out.exists() and not (tmp_path / "e.yaml").exists()
    assert dataset_files(target) == []
    # The types' own dimensions still select.
    moved = ok_json("transfer-datasets", repo, target, "-c", f"{RUN},{CALIB_RUN}",
                    "--where", "detector = 1")  # fmt: skip
    assert moved["new_datasets"] == 3
    pruned = ok_json("prune-datasets", repo, "-c", RUN, "--where", "visit = 1 AND band = 'g'")
    assert pruned == [{"dataset_type": "summary", "run": RUN, "datasets": 2, "already_removed": 0}]


def test_collections_tag_refuses_a_where_on_a_dimension_the_type_lacks(repo: Path) -> None:
    """``visit = 1`` for biases used to tag every bias; the type's own dimensions still do."""
    fails("collections", "tag", repo, "tagged", "bias", "-c", CALIB_RUN, "--where", "visit = 1",
          match="constrains visit, which bias lacks")  # fmt: skip
    assert "tagged" not in {r["name"] for r in ok_json("collections", "list", repo)}
    tagged = ok_json("collections", "tag", repo, "tagged", "bias", "-c", CALIB_RUN,
                     "--where", "detector = 1")  # fmt: skip
    assert tagged == [{"collection": "tagged", "tagged": 1}]


def test_chain_modes_tree_and_show_uri(repo: Path) -> None:
    ok_json("collections", "chain", repo, "inner", CALIB_RUN)
    ok_json("collections", "chain", repo, "outer", "inner", RUN)
    assert ok_json("collections", "chain", repo, "outer", "0", "--mode", "pop")[0]["children"] == [
        RUN
    ]
    ok_json("collections", "chain", repo, "outer", "inner", "--mode", "prepend")
    fails("collections", "chain", repo, "outer", "nope", "--mode", "remove", match="not among")
    tree = ok_json("collections", "list", repo, "outer", "--tree")
    assert [(r["name"], r["depth"]) for r in tree] == [
        ("outer", 0),
        ("inner", 1),
        (CALIB_RUN, 2),
        (RUN, 1),
    ]
    text = rc2("collections", "list", repo, "outer", "--tree").stdout
    assert f"    {CALIB_RUN}" in text
    rows = ok_json("query-datasets", repo, "bias", "--show-uri")
    assert all(r["uri"].startswith("file://") for r in rows)
    assert Path(rows[0]["uri"].removeprefix("file://")).is_file()
