"""What a killed writer leaves is repaired by the next one; failed ingests exit non-zero.

Orphans (a file at a new dataset's path) are adopted when identical and replaced when not,
temporaries of dead writers are removed, ``move`` keeps its source until the commit (and
a re-run removes a source its killed move left), a failed ingest leaves no empty RUN, and the commands exit 3 (some failed) or 1 (all did)
naming every failed file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from rc2_platform.butler import Butler
from rc2_platform.cli import main
from rc2_platform.core import DatasetRef
from rc2_platform.datastore import FileDatastore
from rc2_platform.datastore._repair import temporary_name
from rc2_platform.ingest import register_instrument
from rc2_platform_tests.datastore.helpers import make_ref
from rc2_platform_tests.hostile.conftest import expect_cli_refusal
from rc2_platform_tests.hostile.crash_support import expect_consistent

if TYPE_CHECKING:
    from rc2_platform.simulate import SimulationResult


_RAW = make_ref("raw", "Exposure", run="HSC/raw/all", instrument="HSC", exposure=7, detector=1)


def _ref() -> DatasetRef:
    return _RAW


@pytest.fixture
def store(tmp_path: Path) -> FileDatastore:
    return FileDatastore(tmp_path / "root")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "src.fits"
    fits.PrimaryHDU(np.arange(6, dtype=np.float32).reshape(2, 3)).writeto(path)
    return path


def _orphan(store: FileDatastore, content: bytes) -> Path:
    target = store.root / store.relative_path_for(_ref(), ".fits")
    target.parent.mkdir(parents=True)
    target.write_bytes(content)
    return target


def test_crash_identical_orphan_is_adopted(store: FileDatastore, source: Path) -> None:
    target = _orphan(store, source.read_bytes())
    inode = target.stat().st_ino
    record = store.ingest(source, _ref(), "copy", repair=True)
    assert (store.root / record.path) == target and target.stat().st_ino == inode


def test_crash_different_orphan_is_replaced(store: FileDatastore, source: Path) -> None:
    target = _orphan(store, b"half a file")
    record = store.ingest(source, _ref(), "copy", repair=True)
    assert target.read_bytes() == source.read_bytes()
    assert record.file_size == source.stat().st_size


def test_crash_orphan_without_repair_is_refused(store: FileDatastore, source: Path) -> None:
    _orphan(store, source.read_bytes())
    with pytest.raises(Exception, match="already exists in the datastore"):
        store.ingest(source, _ref(), "copy")


def test_crash_symlink_orphan_adopted_only_if_it_points_at_the_source(
    store: FileDatastore, source: Path, tmp_path: Path
) -> None:
    target = store.root / store.relative_path_for(_ref(), ".fits")
    target.parent.mkdir(parents=True)
    other = tmp_path / "other.fits"
    shutil.copy(source, other)
    os.symlink(other, target)
    store.ingest(source, _ref(), "symlink", repair=True)
    assert os.readlink(target) == str(source.resolve())


def test_crash_temporaries_of_dead_writers_are_removed(store: FileDatastore, source: Path) -> None:
    target = store.root / store.relative_path_for(_ref(), ".fits")
    target.parent.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    mine = temporary_name(target)
    theirs = mine.with_name(mine.name.replace(f".{os.getpid()}@", f".{dead.stdout.strip()}@"))
    mine.write_bytes(b"being written")
    theirs.write_bytes(b"killed half-way")
    FileDatastore(store.root).ingest(source, _ref(), "copy")
    assert mine.exists() and not theirs.exists()


def test_crash_move_keeps_its_source_until_the_commit(store: FileDatastore, source: Path) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.ingest(source, _ref(), "move")
        assert source.exists()
        raise RuntimeError("registry commit failed")
    assert source.exists() and not store.path_for(_ref()).exists()
    with store.transaction():
        store.ingest(source, _ref(), "move")
        assert source.exists()
    assert not source.exists() and store.path_for(_ref()).exists()


def test_crash_finish_move_deletes_only_an_identical_source(
    store: FileDatastore, source: Path, tmp_path: Path
) -> None:
    """A move killed after its commit: the source goes only if the stored file is identical."""
    copy = tmp_path / "copy.fits"
    shutil.copy(source, copy)
    with store.transaction():
        record = store.ingest(copy, _ref(), "copy")
    target = store.root / record.path
    other = tmp_path / "other.fits"
    other.write_bytes(source.read_bytes()[:-1] + b"x")
    assert not store.finish_move(other, record)  # same size, other bytes
    assert not store.finish_move(target, record)  # the datastore file itself
    link = tmp_path / "link.fits"
    os.symlink(target, link)
    with store.transaction():
        assert store.finish_move(source, record)  # same size and SHA-256
        assert source.exists()  # deleted on commit only
    assert not source.exists() and target.exists() and other.exists()
    hard = tmp_path / "hard.fits"
    os.link(target, hard)
    with store.transaction():
        assert store.finish_move(hard, record)  # same inode
    assert not hard.exists() and target.exists()
    os.unlink(target)
    os.symlink(copy, target)  # a datastore symlink to the source: never
    assert not store.finish_move(copy, record)


@pytest.mark.parametrize(
    "point", ["datastore.transaction.committed:1", "datastore.ingest.source_deleted:1"]
)
def test_crash_rc2_ingest_move_killed_after_its_commit_rerun_removes_the_sources(
    repo: Path, tiny_survey: SimulationResult, tmp_path: Path, point: str
) -> None:
    staged = tmp_path / "staged"
    staged.mkdir()
    files = [Path(shutil.copy(f, staged / f.name)) for f in _raws(tiny_survey, "HSC-G", 3)]
    rc2 = str(Path(sys.executable).parent / "rc2")
    args = [rc2, "ingest-raws", str(repo), "--transfer", "move", *map(str, files)]
    killed = subprocess.run(
        args, env={**os.environ, "RC2_KILL_AT": point}, capture_output=True, text=True, check=False
    )
    assert killed.returncode == -9, killed.stderr
    left = [f for f in files if f.exists()]
    assert len(left) == (3 if point.startswith("datastore.transaction") else 2)
    again = subprocess.run(args[:5] + [str(f) for f in left], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"finishing {len(left)} `move` ingest(s) killed after their commit" in again.stderr
    assert not any(f.exists() for f in files)
    found = expect_consistent(repo, f"ingest-raws --transfer move killed at {point}", kill=True)
    assert found.datasets == 3


# --- failed ingests: exit codes, named files, no empty RUN -----------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    with Butler.create(tmp_path / "repo") as butler:
        register_instrument(butler)
    return tmp_path / "repo"


def _raws(survey: SimulationResult, band_filter: str, n: int) -> list[Path]:
    return sorted((survey.root / "raw" / band_filter).rglob("*.fits"))[:n]


def _block(repo: Path, *parts: str) -> None:
    """A plain file where the datastore needs a directory: writing there fails (like EACCES)."""
    path = repo.joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("in the way")


def test_crash_ingest_failing_everywhere_exits_1_and_leaves_no_run(
    repo: Path, tiny_survey: SimulationResult
) -> None:
    _block(repo, "HSC", "raw", "all", "raw")
    files = _raws(tiny_survey, "HSC-G", 2)
    result = expect_cli_refusal(["ingest-raws", repo, "--transfer", "copy", *files])
    assert result.exit_code == 1, result.output
    assert all(str(f) in result.output for f in files)
    with Butler(repo) as butler:
        assert "HSC/raw/all" not in butler.registry.query_collections()
    (repo / "HSC" / "raw" / "all" / "raw").unlink()
    expect_consistent(repo, "failed ingest")


def test_crash_ingest_failing_partly_exits_3_naming_the_failed_files(
    repo: Path, tiny_survey: SimulationResult
) -> None:
    good = _raws(tiny_survey, "HSC-G", 2)
    bad = _raws(tiny_survey, "HSC-R", 2)
    for f in bad:  # a directory where each bad raw's file must go: the rename fails
        _, exposure, detector = f.stem.split("-")
        name = f"raw_HSC_{int(exposure)}_{int(detector)}_HSC_raw_all.fits"
        (repo / "HSC" / "raw" / "all" / "raw" / name).mkdir(parents=True)
    result = expect_cli_refusal(["ingest-raws", repo, "--transfer", "copy", *good, *bad])
    assert result.exit_code == 3, result.output
    failures = [line for line in result.output.splitlines() if line.startswith("failed:")]
    assert all(any(str(f) in line for line in failures) for f in bad)
    assert not any(str(f) in line for line in failures for f in good)


def test_crash_rc2_bootstrap_killed_then_rerun_exits_0(
    tiny_survey: SimulationResult, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    config = str(tiny_survey.bootstrap)
    env = {**os.environ, "RC2_KILL_AT": "butler.ingest.before_commit:3"}
    killed = subprocess.run(
        [str(Path(sys.executable).parent / "rc2"), "bootstrap", str(repo), config, "--json"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    assert "killed at crash point 3 (butler.ingest.before_commit)" in killed.stderr
    again = CliRunner().invoke(main, ["bootstrap", str(repo), config, "--json"])
    assert again.exit_code == 0, again.output
    expect_consistent(repo, "rc2 bootstrap killed before a commit", kill=True)
