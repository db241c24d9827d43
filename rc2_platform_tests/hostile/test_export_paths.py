"""Export files naming files outside their folder: refused unless ``--allow-outside-files``.

An export file may be someone else's. Before, ``rc2 import`` copied whatever it named —
``/etc/passwd``, ``../../secret``, a symlink out of the export folder — into the
repository. Now each is one line naming the export file, the dataset, the path and the
rule (and the flag), exit 1, nothing written; with the flag the same file is imported
(the operator trusts it). Our own exports still round-trip: one made without
``--with-files`` names the source datastore and needs the flag, as ``rc2 export`` says.
A transfer reads a ``direct``-ingested file (outside the source datastore) only with it.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from rc2_platform.butler import Butler, FileDataset
from rc2_platform.butler_transfer import export_datasets, import_datasets, transfer_datasets
from rc2_platform.core import DataCoordinate, DatasetRef
from rc2_platform.errors import OutsideFilesError
from rc2_platform_tests.hostile.conftest import expect_cli_refusal, run_cli
from rc2_platform_tests.move_fixtures import populate, snapshot, write_files

ALL = ["HSC/defaults", "HSC/calib"]
SECRET = b"secret-10b"  # as long as the files write_files makes: sizes agree
FLAG = "--allow-outside-files"


def _dest(tmp_path: Path, db_url: str, name: str = "dest") -> Path:
    Butler.create(tmp_path / name, None if db_url.startswith("sqlite") else db_url).close()
    return tmp_path / name


def _repo_files(root: Path) -> list[bytes]:
    """The bytes of every file in the datastore (not the repository's own files)."""
    own = ("butler.yaml", "registry.sqlite3")
    return [p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name not in own]


def _assert_untouched(root: Path) -> None:
    with Butler(root) as butler:  # still opens
        assert butler.registry.query_collections() == []
        assert butler.registry.query_dimension_records("instrument") == []
    assert _repo_files(root) == []


@pytest.fixture
def export_file(tmp_path: Path) -> Path:
    """``exp/export.yaml`` with its files in ``exp/files``, and ``secret.txt`` beside ``exp``."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    with Butler.create(tmp_path / "source") as source:
        populate(source.registry)
        write_files(source)
        out = tmp_path / "exp" / "export.yaml"
        out.parent.mkdir()
        report = export_datasets(source, out, ALL, with_files=tmp_path / "exp" / "files")
        assert report.files_transferred == 4 and not report.outside_files
    return out


def _first_file(doc: dict[str, Any]) -> tuple[dict[str, Any], list[list[Any]], int]:
    """The first dataset group with files, its rows and the path column."""
    for group in doc["datasets"]:
        rows = [json.loads(line) for line in group["rows"].splitlines() if line]
        at = group["columns"].index("path")
        if rows[0][at] is not None:
            return group, rows, at
    raise AssertionError("no dataset with a file")


def _set_path(doc: dict[str, Any], path: str, files_root: str | None = None) -> None:
    """The first file's path becomes ``path``; with ``files_root`` (leading out of the
    export folder ``exp``), the others are made relative to it (``exp/files/...``)."""
    group, rows, at = _first_file(doc)
    rows[0][at] = path
    group["rows"] = "".join(json.dumps(r) + "\n" for r in rows)
    if files_root is not None:
        doc["files_root"] = files_root
        for other in doc["datasets"]:
            others = [json.loads(line) for line in other["rows"].splitlines() if line]
            at = other["columns"].index("path")
            for row in others:
                if row[at] is not None and row[at] != path:
                    row[at] = f"exp/files/{row[at]}"
            other["rows"] = "".join(json.dumps(r) + "\n" for r in others)


def _symlink_first(doc: dict[str, Any], out: Path) -> None:
    _, rows, at = _first_file(doc)
    target = out.parent / doc["files_root"] / rows[0][at]
    target.unlink()
    target.symlink_to(out.parent.parent / "secret.txt")


def _symlink_folder(doc: dict[str, Any], out: Path) -> None:
    """The first file's folder becomes a symlink to a folder outside holding the secret."""
    _, rows, at = _first_file(doc)
    target = out.parent / doc["files_root"] / rows[0][at]
    elsewhere = out.parent.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / target.name).write_bytes(SECRET)
    for other in target.parent.iterdir():
        if other.name != target.name:
            other.rename(elsewhere / other.name)  # the folder's other files stay readable
        else:
            other.unlink()
    target.parent.rmdir()
    target.parent.symlink_to(elsewhere)


#: case -> (edit of the document (it may change the export folder), what the line names)
CASES: dict[str, tuple[Callable[[dict[str, Any], Path], Any], str]] = {
    "absolute path": (
        lambda d, out: _set_path(d, str(out.parent.parent / "secret.txt")),
        "names the absolute path '{tmp}/secret.txt'",
    ),
    "dot-dot path": (
        lambda d, out: _set_path(d, "../../secret.txt"),
        "names '../../secret.txt' (files_root 'files'), which '..' leads out",
    ),
    "files_root leading out": (
        lambda d, out: _set_path(d, "secret.txt", ".."),
        "names 'secret.txt' (files_root '..'), which '..' leads out",
    ),
    "absolute files_root": (
        lambda d, out: _set_path(d, "secret.txt", str(out.parent.parent)),
        "names 'secret.txt' under files_root '{tmp}', an absolute path",
    ),
    "symlink out of the folder": (
        _symlink_first,
        "a symlink (or under one) to {tmp}/secret.txt, out of the export's folder",
    ),
    "folder symlinked out": (_symlink_folder, "a symlink (or under one) to {tmp}/elsewhere/"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_import_refuses_files_outside_the_export_folder_unless_allowed(
    export_file: Path, tmp_path: Path, db_url: str, case: str
) -> None:
    edit, names = CASES[case]
    doc = yaml.safe_load(export_file.read_text())
    edit(doc, export_file)
    export_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    dest = _dest(tmp_path, db_url)
    tmp = os.path.realpath(tmp_path)
    for extra in ([], ["--dry-run"]):
        refused = expect_cli_refusal(["import", str(dest), str(export_file), *extra])
        assert refused.exit_code == 1
        line = refused.output.strip()
        assert "\n" not in line, refused.output
        assert f"export file {export_file}: dataset " in line and "calexp" in line
        assert names.format(tmp=tmp) in line, line
        assert f"relative paths inside its folder {os.path.realpath(export_file.parent)}" in line
        assert FLAG in line and "nothing was written" in line
        _assert_untouched(dest)
    with Butler(dest) as butler, pytest.raises(OutsideFilesError):
        import_datasets(butler, export_file)
    if case == "dot-dot path":  # its datastore path would leave the destination's root too
        expect_cli_refusal(
            ["import", str(dest), str(export_file), FLAG, "--dry-run"],
            match="'../../secret.txt' for dataset",
        )
        refused = expect_cli_refusal(["import", str(dest), str(export_file), FLAG])
        assert f"outside the datastore root {dest}" in refused.output
        _assert_untouched(dest)
        return
    # The operator trusts the file: the flag reads the outside file (it really is read).
    allowed = run_cli(["import", str(dest), str(export_file), FLAG, "--json"])
    assert allowed.exit_code == 0, allowed.output
    assert json.loads(allowed.stdout)["new_datasets"] == 11
    assert _repo_files(dest).count(SECRET) == 1


def _source_and_export_args(tmp_path: Path) -> tuple[Any, Path, list[str]]:
    """A source repository with files (its snapshot), the export file's path in a folder
    of its own, and the `rc2 export` arguments of every collection."""
    with Butler.create(tmp_path / "source") as source:
        populate(source.registry)
        write_files(source)
        expected = snapshot(source.registry)
    out = tmp_path / "exp" / "export.yaml"
    out.parent.mkdir()
    return expected, out, ["export", str(tmp_path / "source"), str(out), "-c", ",".join(ALL)]


@pytest.mark.parametrize("with_files", [None, "beside", "symlinks"])
def test_own_export_naming_outside_files_round_trips_with_the_flag(
    tmp_path: Path, db_url: str, with_files: str | None
) -> None:
    """An export without --with-files (the source datastore's absolute root), into a folder
    beside the export file, or of symlinks: `rc2 export` says the import needs the flag;
    without it the import is refused naming the flag; with it every answer is kept."""
    expected, out, args = _source_and_export_args(tmp_path)
    if with_files == "beside":
        args += ["--with-files", str(tmp_path / "files")]
    elif with_files == "symlinks":
        args += ["--with-files", str(out.parent / "files"), "--transfer", "symlink"]
    exported = run_cli(args)
    assert exported.exit_code == 0, exported.output
    assert f"`rc2 import` reads them only with {FLAG}" in exported.output
    assert json.loads(run_cli([*args, "--json"]).stdout)["outside_files"] is True
    dest = _dest(tmp_path, db_url)
    refused = expect_cli_refusal(["import", str(dest), str(out)], match=FLAG)
    assert refused.output.count("\n") == 1
    _assert_untouched(dest)
    allowed = run_cli(["import", str(dest), str(out), FLAG])
    assert allowed.exit_code == 0, allowed.output
    with Butler(dest) as butler:
        assert snapshot(butler.registry) == expected


def test_own_export_with_files_in_its_folder_needs_no_flag(tmp_path: Path, db_url: str) -> None:
    expected, out, args = _source_and_export_args(tmp_path)
    exported = run_cli([*args, "--with-files", str(out.parent / "files")])
    assert exported.exit_code == 0 and FLAG not in exported.output, exported.output
    dest = _dest(tmp_path, db_url)
    imported = run_cli(["import", str(dest), str(out)])
    assert imported.exit_code == 0, imported.output
    with Butler(dest) as butler:
        assert snapshot(butler.registry) == expected


def test_transfer_reads_a_direct_ingested_file_only_with_the_flag(
    tmp_path: Path, db_url: str
) -> None:
    """A file ingested in place (``direct``: an absolute path in the source registry) lies
    outside the source datastore: refused with one line naming it and the flag, nothing
    written; with the flag it is copied to ``_direct/<id>.fits``."""
    outside = tmp_path / "outside.fits"
    outside.write_bytes(SECRET)
    with Butler.create(tmp_path / "source") as source:
        populate(source.registry)
        write_files(source)
        calexp = source.registry.get_dataset_type("calexp")
        values = {"instrument": "HSC", "visit": 2, "detector": 0}
        data_id = DataCoordinate(calexp.dimensions, tuple(values[d] for d in calexp.dimensions))
        ref = DatasetRef(calexp, data_id, "HSC/runs/b", uuid.uuid4())
        source.ingest([FileDataset(outside, ref)], transfer="direct")
    dest = _dest(tmp_path, db_url)
    args = ["transfer-datasets", str(tmp_path / "source"), str(dest), "-c", ",".join(ALL)]
    refused = expect_cli_refusal(args)
    line = refused.output.strip()
    assert "\n" not in line and refused.exit_code == 1
    assert f"dataset {ref.id} (calexp" in line and f"'{outside.resolve()}'" in line
    assert "ingested in place with `direct`" in line and FLAG in line
    _assert_untouched(dest)
    moved = run_cli([*args, FLAG, "--json"])
    assert moved.exit_code == 0, moved.output
    assert json.loads(moved.stdout)["new_datasets"] == 12
    with Butler(dest) as butler:
        rec = butler.datastore_records([ref])[ref.id]
        assert rec.path == f"_direct/{ref.id}.fits"
        assert butler.datastore.absolute(rec).read_bytes() == SECRET
    with Butler(tmp_path / "source") as source, Butler(dest) as butler:
        assert transfer_datasets(source, butler, ALL, allow_outside_files=True).new_datasets == 0
