"""FileDatastore: put/get/remove, every ingest transfer mode, atomicity and transactions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from rc2_platform.datastore import FileDatastore, FitsExposureFormatter, Transfer
from rc2_platform.errors import DatastoreError, FileNotInDatastoreError, FormatterError
from rc2_platform_tests.datastore.helpers import make_ref


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())


@pytest.fixture
def store(tmp_path: Path) -> FileDatastore:
    return FileDatastore(tmp_path / "repo")


@pytest.fixture
def raw_file(tmp_path: Path) -> Path:
    path = tmp_path / "incoming" / "HSC-0001228-049.fits"
    path.parent.mkdir()
    fits.PrimaryHDU(np.arange(6, dtype=np.int16).reshape(2, 3)).writeto(path)
    return path


def raw_ref() -> Any:
    return make_ref(
        "raw", "Exposure", run="HSC/raw/all", instrument="HSC", exposure=1228, detector=49
    )


def test_put_returns_relative_record_and_get_exists_remove(store: FileDatastore) -> None:
    ref = make_ref("meta", "Json")
    record = store.put({"x": 1}, ref)
    assert not os.path.isabs(record.path)
    assert record.dataset_id == ref.id and record.storage_class == "Json"
    assert record.file_size == (store.root / record.path).stat().st_size
    assert store.exists(ref) and store.exists(ref, record)
    assert store.get(ref) == {"x": 1}
    store.remove(ref, record)
    assert not store.exists(ref)
    assert files_under(store.root) == [] and list(store.root.iterdir()) == []
    store.remove(ref, record)  # idempotent
    with pytest.raises(FileNotInDatastoreError, match="meta"):
        store.get(ref, record)


def test_put_refuses_to_overwrite_unless_asked(store: FileDatastore) -> None:
    ref = make_ref("meta", "Json")
    store.put({"x": 1}, ref)
    with pytest.raises(DatastoreError, match="already exists"):
        store.put({"x": 2}, ref)
    assert store.get(ref) == {"x": 1}
    store.put({"x": 2}, ref, overwrite=True)
    assert store.get(ref) == {"x": 2}


def test_failure_in_the_middle_of_a_put_leaves_no_file(
    store: FileDatastore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def half_write(self: Any, obj: Any, path: Path) -> None:
        path.write_bytes(b"SIMPLE  =                    T" + b" " * 100)
        raise OSError("disk full")

    monkeypatch.setattr(FitsExposureFormatter, "write", half_write)
    ref = make_ref()
    with pytest.raises(FormatterError, match="disk full"):
        store.put(np.zeros((2, 2)), ref)
    assert files_under(store.root) == []
    assert not store.exists(ref)


@pytest.mark.parametrize("mode", ["copy", "hardlink", "symlink", "move", "auto"])
def test_ingest_transfer_modes(store: FileDatastore, raw_file: Path, mode: str) -> None:
    original = raw_file.read_bytes()
    ref = raw_ref()
    record = store.ingest(raw_file, ref, mode)
    target = store.root / record.path
    assert record.path.startswith("HSC/raw/all/raw/") and record.path.endswith(".fits")
    assert target.read_bytes() == original
    assert store.get(ref, record).image.shape == (2, 3)
    if mode == "move":
        assert not raw_file.exists()
    else:
        assert raw_file.read_bytes() == original
    if mode == "symlink":
        assert target.is_symlink() and target.resolve() == raw_file.resolve()
    if mode in ("hardlink", "auto"):
        assert target.stat().st_ino == raw_file.stat().st_ino
    if mode == "copy":
        assert target.stat().st_ino != raw_file.stat().st_ino
    store.remove(ref, record)
    assert not target.exists() and not target.is_symlink()
    if mode != "move":
        assert raw_file.exists()  # removing a link never deletes the source


def test_ingest_direct_keeps_absolute_path_and_remove_never_deletes_it(
    store: FileDatastore, raw_file: Path
) -> None:
    ref = raw_ref()
    record = store.ingest(raw_file, ref, Transfer.DIRECT)
    assert record.path == str(raw_file.resolve())
    assert files_under(store.root) == []
    assert store.exists(ref, record) and store.get(ref, record).shape == (2, 3)
    store.remove(ref, record)
    assert raw_file.exists()


def test_ingest_auto_inside_root_is_in_place(store: FileDatastore) -> None:
    inside = store.root / "staging" / "file.fits"
    inside.parent.mkdir(parents=True)
    fits.PrimaryHDU(np.ones((2, 2))).writeto(inside)
    record = store.ingest(inside, raw_ref(), "auto")
    assert record.path == "staging/file.fits"


def test_ingest_keeps_compressed_extension(store: FileDatastore, tmp_path: Path) -> None:
    src = tmp_path / "a.fits.fz"
    src.write_bytes(b"not really compressed")
    record = store.ingest(src, raw_ref(), "copy")
    assert record.path.endswith(".fits.fz")


def test_ingest_errors(store: FileDatastore, raw_file: Path, tmp_path: Path) -> None:
    with pytest.raises(DatastoreError, match="unknown transfer mode 'teleport'"):
        store.ingest(raw_file, raw_ref(), "teleport")
    with pytest.raises(DatastoreError, match="no such file"):
        store.ingest(tmp_path / "missing.fits", raw_ref(), "copy")
    ref = raw_ref()
    store.ingest(raw_file, ref, "copy")
    with pytest.raises(DatastoreError, match="already exists"):
        store.ingest(raw_file, ref, "copy")


def test_transaction_failure_removes_written_files(store: FileDatastore) -> None:
    kept = make_ref("meta", "Json", run="before")
    store.put({"keep": True}, kept)
    with pytest.raises(RuntimeError, match="registry insert failed"), store.transaction():
        store.put({"a": 1}, make_ref("meta", "Json", run="r1"))
        store.put(np.zeros((2, 2)), make_ref())
        raise RuntimeError("registry insert failed")
    assert [p.relative_to(store.root).parts[0] for p in files_under(store.root)] == ["before"]


def test_transaction_failure_undoes_move_and_keeps_removed(
    store: FileDatastore, raw_file: Path
) -> None:
    old = make_ref("meta", "Json", run="old")
    old_record = store.put({"old": 1}, old)
    with pytest.raises(RuntimeError), store.transaction():
        store.ingest(raw_file, raw_ref(), "move")
        store.remove(old, old_record)
        assert store.exists(old)  # deleted only when the transaction commits
        raise RuntimeError("boom")
    assert raw_file.exists()
    assert store.get(old, old_record) == {"old": 1}
    assert [p.name for p in files_under(store.root)] == [Path(old_record.path).name]


def test_transaction_success_keeps_files_and_applies_removes(store: FileDatastore) -> None:
    old = make_ref("meta", "Json", run="old")
    old_record = store.put({"old": 1}, old)
    new = make_ref("meta", "Json", run="new")
    with store.transaction():
        with store.transaction():  # nested blocks join the outer one
            store.put({"new": 1}, new)
        store.remove(old, old_record)
    assert store.get(new) == {"new": 1}
    assert not store.exists(old)
    assert len(files_under(store.root)) == 1


def test_tampered_record_path_cannot_leave_root(store: FileDatastore, tmp_path: Path) -> None:
    from dataclasses import replace

    from rc2_platform.errors import PathTraversalError

    ref = make_ref("meta", "Json")
    record = store.put({"x": 1}, ref)
    (tmp_path / "secret.json").write_text('{"secret": 1}')
    with pytest.raises(PathTraversalError):
        store.get(ref, replace(record, path="../secret.json"))
