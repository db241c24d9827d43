"""Butler put/get/ingest/remove and atomicity on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
import yaml
from astropy.table import Table

from rc2_platform.butler import Butler, FileDataset
from rc2_platform.datastore import Exposure, Transfer
from rc2_platform.errors import DatasetConflictError, FormatterError
from rc2_platform.registry import DatasetIdGenMode, DatasetRef
from rc2_platform_tests.butler.conftest import RUN, SUMMARY, count_rows, dataset_files, snapshot
from rc2_platform_tests.databases import scratch_database

DID = {"instrument": "HSC", "visit": 1, "detector": 0}


def make_exposure() -> Exposure:
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    return Exposure(
        image,
        mask=np.ones((3, 4), dtype=np.int32),
        variance=np.full((3, 4), 2.0, dtype=np.float32),
        header={"OBJECT": "test"},
    )


# --- round trips --------------------------------------------------------------------------


def test_put_get_exists_remove_round_trip_of_every_storage_class(butler: Butler) -> None:
    exposure = make_exposure()
    table = Table({"ra": [1.0, 2.0] * u.deg, "flux": [3.0, 4.0]})
    summary = {"n": 3, "bands": ["g", "r"], "nested": {"a": 1.5}}
    refs = [
        butler.put(exposure, "calexp", DID),
        butler.put(table, "src", DID),
        butler.put(summary, "summary", DID),
    ]
    got = butler.get("calexp", DID)
    np.testing.assert_array_equal(got.image, exposure.image)
    np.testing.assert_array_equal(got.mask, exposure.mask)
    np.testing.assert_array_equal(got.variance, exposure.variance)
    got_table = butler.get("src", DID)
    assert list(got_table["ra"]) == [1.0, 2.0] and got_table["ra"].unit == u.deg
    assert butler.get(refs[2]) == summary
    assert all(butler.exists(r) for r in refs)
    assert butler.query_datasets("summary") == [refs[2]]

    butler.remove(refs)
    assert not any(butler.exists(r) for r in refs)
    assert snapshot(butler)[:2] == (0, 0) and dataset_files(butler.root) == []


def test_reopened_repository_sees_datasets(butler: Butler) -> None:
    ref = butler.put({"x": 1}, "summary", DID)
    with Butler(butler.root, collections=RUN) as again:
        assert again.get("summary", DID) == {"x": 1}
        assert again.resolve("summary", DID) == ref


# --- atomicity ----------------------------------------------------------------------------


def test_second_put_of_same_data_id_fails_and_keeps_the_first(butler: Butler) -> None:
    butler.put({"v": 1}, "summary", DID)
    before = snapshot(butler)
    with pytest.raises(DatasetConflictError):
        butler.put({"v": 2}, "summary", DID)
    assert snapshot(butler) == before
    assert butler.get("summary", DID) == {"v": 1}


def test_registry_failure_after_file_write_removes_the_file(butler: Butler) -> None:
    before = snapshot(butler)
    with pytest.raises(DatasetConflictError), butler.transaction():
        butler.put({"v": 1}, "summary", DID)  # written, then undone below
        assert len(dataset_files(butler.root)) == 1
        butler.put({"v": 2}, "summary", DID)
    assert snapshot(butler) == before


def test_formatter_failure_leaves_no_registry_row(butler: Butler) -> None:
    before = snapshot(butler)
    with pytest.raises(FormatterError, match="Exposure"):
        butler.put("not an image", "calexp", DID)
    assert snapshot(butler) == before
    assert not butler.exists("calexp", DID)


# --- ingest and batch registration ----------------------------------------------------------


def test_ingest_every_transfer_mode_and_reingest_is_a_no_op(butler: Butler, tmp_path: Path) -> None:
    outside = tmp_path / "incoming"
    outside.mkdir()
    reg = butler.registry
    datasets = []
    for i, mode in enumerate(t.value for t in Transfer):
        run = f"ingest/{mode}"
        reg.register_run(run)
        src = outside / f"{mode}.yaml"
        src.write_text(yaml.safe_dump({"mode": mode}))
        data_id = reg.universe.data_id(
            {"instrument": "HSC", "visit": 1 + i % 2, "detector": 0}, SUMMARY.dimensions
        )
        ref = DatasetRef.make(SUMMARY, data_id, run, DatasetIdGenMode.DATAID_TYPE_RUN)
        datasets.append((mode, src, FileDataset(src, ref)))
        assert butler.ingest([FileDataset(src, ref)], transfer=mode) == [ref]
        assert butler.get(ref) == {"mode": mode}

    records = butler.datastore_records([d.ref for _, _, d in datasets])
    by_mode = {mode: (src, records[d.ref.id]) for mode, src, d in datasets}
    assert by_mode["direct"][1].path == str(by_mode["direct"][0].resolve())
    assert not by_mode["move"][0].exists()
    assert (butler.root / by_mode["symlink"][1].path).is_symlink()
    assert os.stat(butler.root / by_mode["hardlink"][1].path).st_nlink == 2
    assert (butler.root / by_mode["copy"][1].path).read_text() == by_mode["copy"][0].read_text()

    before = snapshot(butler)
    for mode, _, d in datasets:
        assert butler.ingest([d], transfer=mode) == []
    assert snapshot(butler) == before


def test_failed_ingest_leaves_nothing(butler: Butler, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("{a: 1}\n")
    dims = SUMMARY.dimensions
    ids = [
        butler.registry.universe.data_id({"instrument": "HSC", "visit": 1, "detector": d}, dims)
        for d in (0, 1)
    ]
    refs = [DatasetRef.make(SUMMARY, i, RUN) for i in ids]
    before = snapshot(butler)
    with pytest.raises(Exception, match="missing.yaml"):
        butler.ingest(
            [FileDataset(good, refs[0]), FileDataset(tmp_path / "missing.yaml", refs[1])],
            transfer="copy",
        )
    assert snapshot(butler) == before
    assert good.exists()


def test_register_outputs_written_by_a_worker_is_idempotent(butler: Butler) -> None:
    worker_store = Butler.open_datastore(butler.root)
    data_id = butler.registry.universe.data_id(DID, SUMMARY.dimensions)
    ref = DatasetRef.make(SUMMARY, data_id, RUN)
    record = worker_store.put({"from": "worker"}, ref)
    assert butler.register_outputs([(ref, record)]) == 1
    before = snapshot(butler)
    assert butler.register_outputs([(ref, record)]) == 0
    assert snapshot(butler) == before
    assert butler.get("summary", DID) == {"from": "worker"}


def test_remove_run_collection_removes_datasets_and_files(butler: Butler) -> None:
    butler.put({"v": 1}, "summary", DID)
    butler.put(make_exposure(), "calexp", DID)
    assert butler.remove_collection(RUN) == 2
    assert snapshot(butler)[:2] == (0, 0)
    assert dataset_files(butler.root) == []
    assert RUN not in butler.registry.query_collections()


# --- passwords ------------------------------------------------------------------------------


def test_sqlite_butler_yaml_names_registry_inside_repo(butler: Butler) -> None:
    text = (butler.root / "butler.yaml").read_text()
    if butler.registry.engine.dialect.name == "sqlite":
        assert "<butlerRoot>/registry.sqlite3" in text
        assert str(butler.root) not in text  # the repo can be moved
    else:
        assert str(butler.registry.engine.url.database) in text


def test_server_password_is_not_stored_and_comes_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cret-Pw-917"
    caplog.set_level(logging.DEBUG)
    with scratch_database("postgresql", tmp_path) as url:
        with_password = url.replace("root@", f"root:{secret}@")
        monkeypatch.delenv("RC2_DB_PASSWORD", raising=False)
        created = Butler.create(tmp_path / "repo", registry_url=with_password)
        created.close()
        text = (tmp_path / "repo" / "butler.yaml").read_text()
        assert secret not in text and "root@" in text

        monkeypatch.setenv("RC2_DB_PASSWORD", secret)
        with Butler(tmp_path / "repo") as opened:
            assert opened.registry.engine.url.password == secret
            assert opened.registry.query_collections() == []
    assert caplog.records, "create should warn that the password was not stored"
    assert all(secret not in r.getMessage() for r in caplog.records)


def test_put_is_atomic_on_count_of_rows(butler: Butler) -> None:
    """Several puts in one transaction land together."""
    with butler.transaction():
        for d in (0, 1):
            butler.put({"d": d}, "summary", dict(DID, detector=d))
    assert count_rows(butler, "dataset") == 2
    assert count_rows(butler, "file_datastore_records") == 2
