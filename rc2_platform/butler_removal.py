"""Removal through the butler: RUNs, datasets and collections with their files.

:class:`ButlerRemoval` is a base class of :class:`~rc2_platform.butler.Butler`: its
methods are the butler's (``Butler.remove``, ``Butler.remove_collection``,
``Butler.check_run_removable``) and use only the butler's public interface (registry,
datastore, :meth:`~rc2_platform.butler.Butler.transaction`). A RUN's execution state
folder (``REPO/_runs/<safe run name>/``) goes with the RUN; the functions naming that
folder and telling whether a live orchestrator holds it live here too.

Files are deleted only once the registry rows are gone; a removal killed after its
commit is finished by :mod:`rc2_platform.butler_repair`.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import uuid
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from rc2_platform.core import CollectionType, DatasetRef
from rc2_platform.errors import CollectionError, CollectionInUseError

if TYPE_CHECKING:
    from rc2_platform.butler_repair import FinishedRemoval
    from rc2_platform.datastore import DatastoreRecord, FileDatastore
    from rc2_platform.registry import Registry

#: Folder of a repository holding one sub-folder of execution state per RUN (journal,
#: lock, job folders): ``REPO/_runs/<safe run name>/``. Removing a RUN removes it.
RUNS_DIR = "_runs"


def safe_run_name(run: str) -> str:
    """Return a file-name-safe, collision-free token for a RUN name.

    ``HSC/runs/RC2`` becomes ``HSC_runs_RC2-<8 hex digits of its SHA-1>``.
    """
    token = re.sub(r"[^A-Za-z0-9._-]", "_", run).strip("._") or "run"
    return f"{token[:80]}-{hashlib.sha1(run.encode()).hexdigest()[:8]}"


def run_state_directory(root: str | Path, run: str) -> Path:
    """``REPO/_runs/<safe run name>``: a RUN's execution state (not created here)."""
    return Path(root).resolve() / RUNS_DIR / safe_run_name(run)


def run_in_use(directory: Path) -> str | None:
    """Who executes the RUN whose state folder is ``directory``, if a live process does.

    An orchestrator (``rc2 run``) holds an exclusive ``flock`` on ``lock`` for its life.
    (A workflow's recorded token, DAGMan's or Dagster's, does not stop a removal: the
    operator asking for it is the one who knows that workflow is gone.)
    """
    path = directory / "lock"
    if not path.exists():
        return None
    text = path.read_text()
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return text or "another process"
    finally:
        os.close(fd)
    return None


class ButlerRemoval:
    """The removal methods of :class:`~rc2_platform.butler.Butler` (a base class of it)."""

    if TYPE_CHECKING:  # provided by Butler
        root: Path
        registry: Registry
        datastore: FileDatastore
        finished_removals: list[FinishedRemoval]

        def transaction(self) -> AbstractContextManager[None]: ...

        def finish_pending_removals(self, *, quiet: bool = False) -> list[FinishedRemoval]: ...

        def datastore_records(
            self, refs: Iterable[DatasetRef]
        ) -> dict[uuid.UUID, DatastoreRecord]: ...

    def remove_collection(
        self,
        name: str,
        *,
        unstore: bool = True,
        unlink: bool = False,
        unlink_from_chains: bool = False,
    ) -> int:
        """Remove a collection; for a RUN also its datasets and (``unstore``) their files.

        Atomic: the files are deleted only once the registry rows are gone. A RUN's
        execution state (``REPO/_runs/<run>/``: journal, lock, job folders) goes with it,
        as its provenance dataset goes with its datasets.

        Parameters
        ----------
        name : str
            The collection.
        unstore : bool
            Delete the RUN's files (False: leave them on disk).
        unlink : bool
            Allow removing a RUN whose datasets are tagged or certified in other
            collections: they leave those collections too.
        unlink_from_chains : bool
            Drop the collection from the chains that list it, instead of refusing.

        Returns
        -------
        int
            The number of datasets removed (0 for TAGGED, CHAINED, CALIBRATION).

        Raises
        ------
        CollectionInUseError
            A RUN's datasets are used by TAGGED or CALIBRATION collections (without
            ``unlink``); the message lists them.
        CollectionError
            The RUN is being executed (a live orchestrator holds its lock), or the
            collection is a child of a chain (without ``unlink_from_chains``).
        """
        self.finish_pending_removals(quiet=True)
        if (
            any(f.committed and name in f.runs for f in self.finished_removals)
            and name not in self.registry.query_collections()
        ):
            return 0  # its removal, killed after the commit, was finished on opening
        refs: list[DatasetRef] = []
        is_run = self.registry.get_collection_type(name) is CollectionType.RUN
        if is_run:
            self.check_run_removable(name, unlink=unlink, unlink_from_chains=unlink_from_chains)
            for dt in self.registry.query_dataset_types():
                refs.extend(self.registry.query_datasets(dt, [name], find_first=False))
        records = self.datastore_records(refs) if unstore else {}
        with self.transaction():
            self.registry.remove_collection(name, unlink_from_chains=unlink_from_chains)
            for ref in refs:
                rec = records.get(ref.id)
                if rec is not None:
                    self.datastore.remove(ref, rec)
            if is_run:
                self.datastore.note_removal(runs=[name])
                self.datastore.remove_folder(name, f"{RUNS_DIR}/{safe_run_name(name)}")
        return len(refs)

    def check_run_removable(
        self, run: str, *, unlink: bool = False, unlink_from_chains: bool = False
    ) -> None:
        """Refuse a RUN being executed, or used by chains / TAGGED / CALIBRATION collections.

        Raises
        ------
        CollectionError
            A live orchestrator executes the RUN.
        CollectionInUseError
            Chains list the RUN (unless ``unlink_from_chains``) or other collections
            use its datasets (unless ``unlink``); the message names every one.
        """
        holder = run_in_use(run_state_directory(self.root, run))
        if holder is not None:
            raise CollectionError(
                f"RUN {run!r} is being executed ({holder.strip()}); cancel it "
                f"(`rc2 cancel {self.root} {run}`) or let it end before removing it"
            )
        problems = []
        chains = [] if unlink_from_chains else self.registry.collection_parents(run)
        if chains:
            problems.append(f"is in chain(s) {chains} (--unlink-from-chains drops it from them)")
        users = [] if unlink else self.registry.dataset_users(runs=[run])
        if users:
            listed = ", ".join(f"{u.type.name} {u.name!r} ({u.datasets})" for u in users)
            problems.append(
                f"has datasets used by {listed} (decertify or untag them first, or pass "
                "--unlink to remove them from those collections too)"
            )
        if problems:
            raise CollectionInUseError(f"RUN {run!r} " + " and ".join(problems))

    def remove(self, refs: Iterable[DatasetRef], *, unstore: bool = True) -> list[DatasetRef]:
        """Remove datasets from the registry and (with ``unstore``) their files.

        Returns the refs this call removed. A dataset already gone — removed before, or
        by a concurrent removal that committed first — is skipped, not an error, and its
        file is left to the removal that deleted its rows.
        """
        self.finish_pending_removals(quiet=True)
        refs = list(refs)
        records = self.datastore_records(refs) if unstore else {}
        with self.transaction():
            removed = self.registry.remove_datasets(refs)
            for ref in removed:
                rec = records.get(ref.id)
                if rec is not None:
                    self.datastore.remove(ref, rec)
        return removed
