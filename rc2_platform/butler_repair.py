"""Finishing removals that a ``kill -9`` interrupted after their registry commit.

Every removal through the butler (``Butler.remove``, ``remove_collection`` and the
``rc2 remove-runs`` / ``prune-datasets`` / ``collections remove`` /
``remove-dataset-type`` commands over them) writes a pending-removal manifest before its
registry commit (``rc2_platform/datastore/_pending.py``) and deletes it once its files
are gone. A manifest found later, whose writer is gone, is finished here:

- its registry rows are still there (the transaction did not commit): it is discarded,
  nothing is deleted;
- they are gone (it committed): every listed file that no datastore record names is
  deleted, and every listed RUN folder (``_runs/<run>``) of a RUN that does not exist;
  a file some dataset has (re)used since is kept.

A writable :class:`~rc2_platform.butler.Butler` does this when it opens and before each
removal; ``rc2 fsck`` does it on demand.

Also here: :func:`finish_moves`, what re-running a ``move`` ingest killed after its
commit does (the dataset is registered, the source still there).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rc2_platform.butler_removal import run_in_use
from rc2_platform.datastore._pending import Manifest, pending_manifests
from rc2_platform.errors import DatastoreError

if TYPE_CHECKING:
    from rc2_platform.butler import Butler, FileDataset

__all__ = ["FinishedRemoval", "finish_moves", "finish_pending_removals"]

_log = logging.getLogger(__name__)


@dataclass
class FinishedRemoval:
    """What finishing one pending-removal manifest did.

    Attributes
    ----------
    manifest : str
        The manifest's file name in ``REPO/_removals/``.
    committed : bool
        Its registry rows were gone (files deleted); False: still there (discarded).
    runs, dataset_types : list of str
        What the removal removed (RUNs, dataset types), as it recorded.
    deleted_files, kept_files : int
        Files deleted; files kept because a dataset names them (again).
    deleted_folders : list of str
        RUN folders deleted (``_runs/<run>``).
    errors : list of str
        What could not be deleted (the manifest stays; the next writer retries).
    dry_run : bool
        Nothing was done: the counts say what would be.
    """

    manifest: str
    committed: bool
    runs: list[str] = field(default_factory=list)
    dataset_types: list[str] = field(default_factory=list)
    deleted_files: int = 0
    kept_files: int = 0
    deleted_folders: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dry_run: bool = False

    def what(self) -> str:
        """``RUN 'a', dataset type 'b'``, or ``N dataset(s)`` for a prune."""
        parts = [f"RUN {r!r}" for r in self.runs]
        parts += [f"dataset type {t!r}" for t in self.dataset_types]
        return ", ".join(parts) or "datasets"

    def line(self) -> str:
        """One line for the operator."""
        would = "would be " if self.dry_run else ""
        if not self.committed:
            return (
                f"pending-removal manifest {self.manifest} of {self.what()} {would or 'was '}"
                "discarded: its removal did not commit (the registry rows are still there); "
                "nothing deleted"
            )
        done = f"{'would delete' if self.dry_run else 'deleted'} {self.deleted_files} file(s) no dataset names"
        if self.deleted_folders:
            done += f" and {', '.join(self.deleted_folders)}"
        if self.kept_files:
            done += f", kept {self.kept_files} a dataset uses again"
        verb = "would finish" if self.dry_run else "finished"
        text = f"{verb} the removal of {self.what()} killed after its commit: {done}"
        if self.errors:
            text += f"; {len(self.errors)} left for the next run: {self.errors[0]}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return {
            "manifest": self.manifest,
            "committed": self.committed,
            "runs": self.runs,
            "dataset_types": self.dataset_types,
            "deleted_files": self.deleted_files,
            "kept_files": self.kept_files,
            "deleted_folders": self.deleted_folders,
            "errors": self.errors,
        }


def finish_pending_removals(butler: Butler, *, dry_run: bool = False) -> list[FinishedRemoval]:
    """Finish (or discard) every pending-removal manifest whose writer is gone.

    Manifests of removals still running (their lock is held) are left alone. Each result
    is also logged (WARNING: an operator should know a killed removal was finished).
    ``dry_run``: say what would be deleted (``deleted_*`` count what exists), change
    nothing, log nothing. Otherwise each result is also appended to
    ``butler.finished_removals`` as it is done (kept if a later manifest fails).

    Raises
    ------
    DatastoreError
        A file in ``REPO/_removals/`` is not a manifest.
    """
    done: list[FinishedRemoval] = []
    for manifest in pending_manifests(butler.datastore.root):
        try:
            result = _finish(butler, manifest, dry_run)
        finally:
            manifest.release()
        if not dry_run:
            _log.warning("%s", result.line())
            butler.finished_removals.append(result)
        done.append(result)
    return done


def _finish(butler: Butler, manifest: Manifest, dry_run: bool) -> FinishedRemoval:
    """Decide with the registry, then delete; discards the manifest unless errors remain."""
    reg = butler.registry
    assert manifest.path is not None
    result = FinishedRemoval(
        manifest.path.name,
        dry_run=dry_run,
        committed=False,
        runs=list(manifest.about.get("runs", [])),
        dataset_types=list(manifest.about.get("dataset_types", [])),
    )
    try:
        recorded = set(reg.query_datastore_record_columns([k for k, _ in manifest.files]))
    except ValueError:  # a key that is not a dataset id: not ours to judge by ids
        recorded = set()
    gone_files = [rel for key, rel in manifest.files if key.replace("-", "") not in recorded]
    runs = set(reg.query_collections())
    types = {t.name for t in reg.query_dataset_types()}
    gone = (
        gone_files
        or [r for r in result.runs if r not in runs]
        or [t for t in result.dataset_types if t not in types]
        or [k for k, _ in manifest.folders if k not in runs]
    )
    if not gone:
        if not dry_run:
            manifest.discard()
        return result
    result.committed = True
    in_use = reg.datastore_paths_in_use(gone_files) if gone_files else set()
    result.kept_files = len(manifest.files) - len(gone_files) + len(in_use)
    for rel in gone_files:
        if rel in in_use:
            continue
        try:
            result.deleted_files += manifest.delete_file(rel, dry_run=dry_run)
        except DatastoreError as exc:
            result.errors.append(str(exc))
    _finish_folders(butler, manifest, runs, result, dry_run)
    if not (result.errors or dry_run):
        manifest.discard()
    return result


def _finish_folders(
    butler: Butler, manifest: Manifest, runs: set[str], result: FinishedRemoval, dry_run: bool
) -> None:
    """Delete the listed RUN folders of RUNs that are gone and that nobody executes."""
    for run, rel in manifest.folders:
        if run in runs:
            continue  # the RUN exists (again): its folder is its state now
        folder = butler.datastore.root / rel
        holder = run_in_use(folder) if folder.is_dir() else None
        if holder is not None:
            result.errors.append(f"{rel} is held by a live process ({holder.strip()})")
            continue
        if not folder.exists():
            continue
        error = None if dry_run else manifest.delete_folder(rel)
        if error:
            result.errors.append(error)
        else:
            result.deleted_folders.append(rel)


def finish_moves(butler: Butler, registered: list[FileDataset]) -> None:
    """A ``move`` ingest of datasets already registered: delete the sources a kill left.

    A ``move`` killed after its registry commit and before it deleted its sources
    leaves them in place. Re-running the same ingest finds the datasets registered;
    each source whose datastore file is identical (same inode, or same size and
    SHA-256) is deleted after this transaction commits, and one WARNING line says so.
    A source that differs from the registered file is kept, with a WARNING.
    """
    records = butler.datastore_records([d.ref for d in registered])
    finished: list[Path] = []
    for d in registered:
        rec = records.get(d.ref.id)
        if rec is None:
            continue
        if butler.datastore.finish_move(d.path, rec):
            finished.append(Path(d.path))
        elif (
            Path(d.path).exists()
            and butler.datastore.absolute(rec).resolve() != Path(d.path).resolve()
        ):
            _log.warning(
                "kept %s: %s is already registered with another file (%s)", d.path, d.ref, rec.path
            )
    if finished:
        more = f" and {len(finished) - 1} more" if len(finished) > 1 else ""
        _log.warning(
            "finishing %d `move` ingest(s) killed after their commit: the datasets are "
            "registered with identical files, so their sources are removed (%s%s)",
            len(finished), finished[0], more,
        )  # fmt: skip
    butler.finished_moves += finished
