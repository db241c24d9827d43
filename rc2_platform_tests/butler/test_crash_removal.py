"""A removal SIGKILLed at any point leaves a repository that the next writer repairs.

Each case kills a removal (``remove_runs``, ``prune_datasets``, ``remove_collection``,
``remove_dataset_type``) in a forked child at one crash point — before the registry
commit, right after it, between two file deletions, after the last one — then opens
the repository and re-runs the same removal. Afterwards exactly the files of the
removed datasets are gone (and the RUN's ``_runs/<run>`` folder), every other dataset
keeps its file, no manifest is left, registry and disk agree, and the re-run says what
it finished. On SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from rc2_platform.admin import prune_datasets, remove_dataset_type, remove_runs
from rc2_platform.butler import Butler, run_state_directory
from rc2_platform.core import DatasetRef
from rc2_platform.datastore._pending import MANIFEST_DIR
from rc2_platform_tests.butler.conftest import RUN, dataset_files
from rc2_platform_tests.hostile.crash_support import expect_consistent, run_killed, was_killed

KEEP = "HSC/runs/keep"

#: Crash points of one removal, and whether its registry rows are gone when killed there.
POINTS = {
    "datastore.removal.journaled:1": False,  # manifest written, registry not committed
    "datastore.transaction.committed:1": True,  # committed, no file deleted yet
    "datastore.remove.deleted:2": True,  # committed, two files deleted
    "datastore.removal.done:1": True,  # every file deleted, manifest not yet
}

#: Files the repair deletes, given how many the removal lists, per kill point.
DELETED_BY_REPAIR: dict[str, Callable[[int], int]] = {
    "datastore.removal.journaled:1": lambda n: 0,
    "datastore.transaction.committed:1": lambda n: n,
    "datastore.remove.deleted:2": lambda n: n - 2,
    "datastore.removal.done:1": lambda n: 0,
}


def _remove_runs(b: Butler) -> object:
    return remove_runs(b, [RUN])


def _prune(b: Butler) -> object:
    return prune_datasets(b, [RUN], dataset_types=["summary"])


def _collection(b: Butler) -> object:
    return b.remove_collection(RUN)


def _remove_type(b: Butler) -> object:
    return remove_dataset_type(b, "summary", with_datasets=True)


OPERATIONS: dict[str, Callable[[Butler], object]] = {
    "remove-runs": _remove_runs,
    "prune-datasets": _prune,
    "collections-remove": _collection,
    "remove-dataset-type": _remove_type,
}


def _populate(butler: Butler) -> None:
    """RUN: 4 summaries, 2 band configs and a journal folder; KEEP: 2 summaries, 1 config."""
    butler.registry.register_run(KEEP)
    for v in (1, 2):
        for d in (0, 1):
            butler.put({"v": v}, "summary", {"instrument": "HSC", "visit": v, "detector": d})
    for band in ("g", "r"):
        butler.put({"band": band}, "band_cfg", {"band": band})
    for d in (0, 1):
        data_id = {"instrument": "HSC", "visit": 1, "detector": d}
        butler.put({"keep": d}, "summary", data_id, run=KEEP)
    butler.put({"keep": "g"}, "band_cfg", {"band": "g"}, run=KEEP)
    state = run_state_directory(butler.root, RUN)
    state.mkdir(parents=True)
    (state / "journal.jsonl").write_text("{}\n")


def _removed_by(operation: str, butler: Butler) -> list[DatasetRef]:
    """The datasets ``operation`` removes."""
    reg = butler.registry
    if operation in ("remove-runs", "collections-remove"):
        return [
            r
            for dt in reg.query_dataset_types()
            for r in butler.query_datasets(dt, collections=[RUN])
        ]
    runs = [RUN] if operation == "prune-datasets" else [RUN, KEEP]
    return butler.query_datasets("summary", collections=runs, find_first=False)


def _dataset_files(root: Path) -> set[Path]:
    """Files under the root outside ``_runs``, ``_removals``... (dataset files)."""
    return {p for p in dataset_files(root) if not p.relative_to(root).parts[0].startswith("_")}


def _files(butler: Butler, refs: list[DatasetRef]) -> set[Path]:
    return {butler.datastore.absolute(r) for r in butler.datastore_records(refs).values()}


@pytest.mark.parametrize("point", sorted(POINTS))
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_crash_removal_killed_anywhere_is_finished_by_the_next_writer(
    butler: Butler, operation: str, point: str
) -> None:
    _populate(butler)
    root = butler.root
    gone = _files(butler, _removed_by(operation, butler))
    kept = _dataset_files(root) - gone
    state = run_state_directory(root, RUN)
    butler.close()

    def action() -> None:
        with Butler(root) as b:
            OPERATIONS[operation](b)

    code = run_killed(point, action)
    assert was_killed(code), f"{operation} was not killed at {point} (exit {code})"
    manifests = list((root / MANIFEST_DIR).glob("*.json"))
    assert len(manifests) == 1, manifests
    if POINTS[point] and point != "datastore.removal.done:1":
        with Butler(root, read_only=True) as ro:  # a reader repairs nothing
            assert ro.finished_removals == [] and any(p.exists() for p in gone)

    with Butler(root) as again:  # the next writer finishes (or discards) the manifest
        (finished,) = again.finished_removals
        assert finished.committed is POINTS[point], finished
        line = finished.line()
        assert ("finished the removal" if finished.committed else "did not commit") in line
        assert finished.deleted_files == DELETED_BY_REPAIR[point](len(gone))
        OPERATIONS[operation](again)  # the re-run: no error, nothing else removed
    assert not list((root / MANIFEST_DIR).glob("*"))
    assert not any(p.exists() or p.is_symlink() for p in gone), sorted(
        p for p in gone if p.exists()
    )
    assert _dataset_files(root) == kept
    if operation in ("remove-runs", "collections-remove"):
        assert not state.exists()
    else:
        assert state.exists()
    expect_consistent(root, f"{operation} killed at {point}", kill=True)


def test_crash_removal_rerun_of_a_finished_run_says_so(butler: Butler) -> None:
    """remove_runs on a RUN whose killed removal was finished on opening: listed, no error."""
    _populate(butler)
    root = butler.root
    butler.close()
    code = run_killed("datastore.transaction.committed:1", lambda: _remove_runs(Butler(root)))
    assert was_killed(code)
    with Butler(root) as again:
        result = remove_runs(again, [RUN])
        assert result.finished == [RUN] and result.rows == []
        assert "RUN 'HSC/runs/test'" in again.finished_removals[0].line()
        assert again.remove_collection(RUN) == 0
    expect_consistent(root, "remove_runs re-run", kill=True)


def test_crash_removal_keeps_a_file_a_new_dataset_took_over(butler: Butler) -> None:
    """Between the kill and the repair the RUN is re-made and the same path written again."""
    _populate(butler)
    root = butler.root
    butler.close()
    code = run_killed("datastore.transaction.committed:1", lambda: _remove_runs(Butler(root)))
    assert was_killed(code)
    manifest = next((root / MANIFEST_DIR).glob("*.json"))
    hidden = manifest.rename(root / "aside.json")  # no repair on the next opening
    with Butler(root) as b:
        b.registry.register_run(RUN)
        b.put({"new": 1}, "band_cfg", {"band": "g"}, run=RUN)  # same path, new dataset
    hidden.rename(manifest)
    with Butler(root) as again:
        (finished,) = again.finished_removals
        assert finished.committed and finished.kept_files == 1
        assert again.get("band_cfg", {"band": "g"}, collections=[RUN]) == {"new": 1}
    expect_consistent(root, "repair after the path was reused", kill=True)


def test_crash_rc2_remove_runs_killed_then_rerun_exits_0(butler: Butler) -> None:
    """The real command, SIGKILLed by RC2_KILL_AT after its commit, then run again."""
    _populate(butler)
    root = butler.root
    gone = _files(butler, _removed_by("remove-runs", butler))
    butler.close()
    rc2 = str(Path(sys.executable).parent / "rc2")
    env = {**os.environ, "RC2_KILL_AT": "datastore.remove.deleted:1"}
    killed = subprocess.run(
        [rc2, "remove-runs", str(root), RUN], env=env, capture_output=True, text=True, check=False
    )
    assert killed.returncode == -9, killed.stderr
    assert any(p.exists() for p in gone)
    again = subprocess.run(
        [rc2, "remove-runs", str(root), RUN, "--json"], capture_output=True, text=True, check=False
    )
    assert again.returncode == 0, again.stderr
    assert "finished the removal of RUN 'HSC/runs/test' killed after its commit" in again.stderr
    assert '"finished_interrupted_removal": true' in again.stdout
    assert not any(p.exists() for p in gone)
    expect_consistent(root, "rc2 remove-runs killed after its commit", kill=True)


def test_crash_removal_manifest_paths_never_leave_the_root(butler: Butler, tmp_path: Path) -> None:
    """A manifest naming a path outside the root (hand-edited, say) deletes nothing there."""
    _populate(butler)
    root = butler.root
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    butler.close()
    code = run_killed(
        "datastore.transaction.committed:1", partial(lambda r: _remove_runs(Butler(r)), root)
    )
    assert was_killed(code)
    manifest = next((root / MANIFEST_DIR).glob("*.json"))
    text = manifest.read_text()
    first = text.split('"files":[["', 1)[1].split('"', 2)[2].split('"', 1)[0]
    manifest.write_text(text.replace(first, "../precious.txt", 1))
    with Butler(root) as again:
        (finished,) = again.finished_removals
        assert finished.errors and "not a path inside the datastore root" in finished.errors[0]
    assert outside.read_text() == "keep me"


def test_crash_removal_paths_in_use_answers_for_few_and_many_paths(butler: Butler) -> None:
    """The repair's question to the registry: one IN query, or (over 5,000) one scan."""
    _populate(butler)
    (record,) = butler.datastore_records(
        butler.query_datasets("band_cfg", collections=[KEEP])
    ).values()
    few = [record.path, "not/recorded.yaml"]
    many = few + [f"gone/{i}.yaml" for i in range(6000)]
    assert butler.registry.datastore_paths_in_use(few) == {record.path}
    assert butler.registry.datastore_paths_in_use(many) == {record.path}
    assert butler.registry.datastore_paths_in_use([]) == set()


def test_crash_removal_a_foreign_file_in_removals_does_not_block_the_others(
    butler: Butler,
) -> None:
    """A file in _removals/ that is not a manifest: named in one line; the real one is finished."""
    _populate(butler)
    root = butler.root
    gone = _files(butler, _removed_by("remove-runs", butler))
    butler.close()
    assert was_killed(
        run_killed("datastore.transaction.committed:1", lambda: _remove_runs(Butler(root)))
    )
    (root / MANIFEST_DIR / "0-foreign.json").write_text("not json")
    with Butler(root) as again:  # opening logs the foreign file and finishes the manifest
        assert [f.committed for f in again.finished_removals] == [True]
    assert not any(p.exists() for p in gone)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "rc2"), "fsck", str(root)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1 and "0-foreign.json is unreadable" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
