"""The per-RUN provenance dataset, ``rc2 provenance`` (filters, lineage) and ``rc2 report``
read from it, also once the job folders are gone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rc2_platform.butler import Butler
from rc2_platform.cli import main
from rc2_platform.execution.journal import run_directory
from rc2_platform.execution.provenance_table import PROVENANCE_DATASET_TYPE, SCHEMA
from rc2_platform.execution.runner import RunOptions, run_graph
from rc2_platform.provenance_query import lineage, query_provenance
from rc2_platform_tests.execution.helpers import RUN, make_config, make_graph, make_repo


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """a fails on detector 1 (retried once): b[1] and c are blocked."""
    tmp = tmp_path_factory.mktemp("prov")
    butler, raws = make_repo(tmp / "repo")
    butler.close()
    make_graph(tmp / "g.qgraph", raws, configs={"a": {"fail_on": [{"detector": 1}]}})
    summary = run_graph(tmp / "g.qgraph", tmp / "repo", config=make_config(retries=1),
                        options=RunOptions(jobs=2))  # fmt: skip
    assert summary.status == "failed"
    return tmp / "repo"


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_provenance_dataset_has_one_row_per_attempt(failed_run: Path) -> None:
    with Butler(failed_run) as butler:
        (ref,) = butler.query_datasets(PROVENANCE_DATASET_TYPE, collections=RUN)
        path = butler.datastore.path_for(ref)
    table = pq.read_table(path.with_suffix(".parquet"))
    assert table.schema.names == SCHEMA.names
    rows = table.to_pylist()
    failed = [r for r in rows if r["state"] == "failed"]
    assert [(r["task"], json.loads(r["data_id"])["detector"], r["attempt"]) for r in failed] == [
        ("a", 1, 1),
        ("a", 1, 2),
    ]  # the first attempt and its retry
    assert failed[0]["exception_type"] == "TaskError"
    assert "told to fail" in failed[0]["message"]
    ok = next(r for r in rows if r["task"] == "b" and r["state"] == "succeeded")
    assert ok["host"] and ok["pid"] and ok["cpu_seconds"] is not None
    assert ok["end"] >= ok["start"] and ok["peak_memory_mb"] > 0
    assert ok["input_types"] == ["a_out"] and set(ok["output_types"]) == {"b_out", "b_metadata"}
    blocked = {r["task"] for r in rows if r["state"] == "blocked"}
    assert blocked == {"b", "c"}
    meta = json.loads(table.schema.metadata[b"rc2_provenance"])
    assert meta["status"] == "failed" and meta["tasks"] == {"a": 3, "b": 3, "c": 1}


def test_provenance_filters_and_where(failed_run: Path) -> None:
    code, out = _cli("provenance", str(failed_run), RUN, "--state", "failed", "--json")
    assert code == 0, out
    rows = json.loads(out)
    assert len(rows) == 1 and rows[0]["attempt"] == 2  # latest attempt only
    code, out = _cli("provenance", str(failed_run), RUN, "--state", "failed", "--all-attempts",
                     "--json")  # fmt: skip
    assert len(json.loads(out)) == 2
    rows = query_provenance(failed_run, RUN, where="detector > 0 AND task = 'b'", latest=True)
    assert sorted((json.loads(r["data_id"])["detector"], r["state"]) for r in rows) == [
        (1, "blocked"),
        (2, "succeeded"),
    ]
    code, out = _cli("provenance", str(failed_run), RUN, "--where", "nosuch = 1")
    assert code == 1 and "unknown identifier 'nosuch'" in out


def test_lineage_upstream_and_downstream(failed_run: Path) -> None:
    up = lineage(failed_run, RUN, "b_out", where="detector = 2", types=["raw_standin"])
    assert [q["task"] for q in up.quanta] == ["a", "b"]
    (raw,) = up.datasets["raw_standin"]
    assert raw["data_id"] == {"instrument": "HSC", "detector": 2} and raw["run"] == "raw/all"
    down = lineage(failed_run, RUN, "raw_standin", where="detector = 0", direction="downstream")
    assert [(q["task"], q["data_id"]["detector"]) for q in down.quanta] == [("a", 0), ("b", 0)]
    assert set(down.datasets) == {"a_out", "a_metadata", "b_out", "b_metadata"}
    code, out = _cli("provenance", str(failed_run), RUN, "--upstream-of", "b_out", "--where",
                     "detector = 2", "--type", "raw_standin", "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["datasets"]["raw_standin"][0]["id"] == raw["id"]


def test_report_names_the_failure_and_the_seed_table(failed_run: Path) -> None:
    code, out = _cli("report", str(failed_run), RUN, "--json")
    assert code == 0, out
    rep = json.loads(out)
    (err,) = rep["errors"]
    assert err["exception_type"] == "TaskError" and err["tasks"] == ["a"]
    assert err["quanta"][0]["data_id"] == {"instrument": "HSC", "detector": 1}
    assert rep["tasks"]["a"]["retried"] == 1  # the one quantum that ran twice
    assert rep["timing"]["a"]["count"] == 4 and rep["timing"]["a"]["failed"] == 2
    assert rep["timing"]["b"]["blocked"] == 1
    code, out = _cli("report", str(failed_run), RUN)
    assert "TaskError" in out and "{'instrument': 'HSC', 'detector': 1}" in out
    assert "rc2 provenance" in out


def test_report_and_provenance_without_the_job_folders(failed_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(failed_run, copy)
    before = json.loads(_cli("report", str(copy), RUN, "--json")[1])
    shutil.rmtree(run_directory(copy, RUN) / "jobs")
    code, out = _cli("report", str(copy), RUN, "--json")
    assert code == 0, out
    after = json.loads(out)
    assert after["tasks"] == before["tasks"] and after["errors"] == before["errors"]
    shutil.rmtree(run_directory(copy, RUN))  # the journal too: the dataset alone
    code, out = _cli("report", str(copy), RUN, "--json")
    assert code == 0, out
    assert json.loads(out)["tasks"]["a"]["failed"] == 1
    assert len(query_provenance(copy, RUN, state=["failed"])) == 2  # both attempts
