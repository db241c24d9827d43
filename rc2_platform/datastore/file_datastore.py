"""The POSIX file datastore: where the bytes of each dataset live."""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rc2_platform.core.crash_points import crash_point
from rc2_platform.core.dataset_types import DatasetRef
from rc2_platform.core.datastore_record import DatastoreRecord
from rc2_platform.datastore._pending import Manifest
from rc2_platform.datastore._repair import prune_empty_folders, sweep_temporaries, temporary_name
from rc2_platform.datastore.config import DatastoreConfig, load_datastore_config
from rc2_platform.datastore.formatters import Formatter, get_formatter
from rc2_platform.datastore.templates import PathTemplate
from rc2_platform.errors import (
    DatastoreError,
    FileNotInDatastoreError,
    FormatterError,
    PathTraversalError,
    TruncatedFileError,
)

_log = logging.getLogger(__name__)


class Transfer(enum.StrEnum):
    """How :meth:`FileDatastore.ingest` brings an existing file in."""

    DIRECT = "direct"  #: leave the file where it is; record its absolute path
    COPY = "copy"
    HARDLINK = "hardlink"
    SYMLINK = "symlink"
    MOVE = "move"
    AUTO = "auto"  #: in place if inside the root, else hardlink, else copy


@dataclass
class _Txn:
    undo: list[Callable[[], None]] = field(default_factory=list)
    on_commit: list[Callable[[], None]] = field(default_factory=list)
    manifest: Manifest | None = None  #: what this transaction's removal will delete


class FileDatastore:
    """Files under ``root``, laid out by path templates, written by formatters.

    Parameters
    ----------
    root : Path
        Datastore root directory (created if missing).
    config : DatastoreConfig, optional
        Templates and storage classes; the packaged defaults if omitted.

    Notes
    -----
    The datastore holds no database: callers keep the returned
    :class:`DatastoreRecord`. Writes go to a temporary file in the target directory
    and are renamed into place, so a failed write leaves no file.
    """

    def __init__(self, root: Path | str, config: DatastoreConfig | None = None):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.config = config if config is not None else load_datastore_config()
        self._templates = {k: PathTemplate(v, k) for k, v in self.config.templates.items()}
        self._local = threading.local()
        self._swept: set[Path] = set()
        self._resolved: dict[str, str] = {}
        self._root_text = str(self.root)
        self._root_prefix = os.path.join(self._root_text, "")

    # --- paths -------------------------------------------------------------------------

    def formatter_for(self, storage_class: str) -> Formatter:
        """Return the formatter configured for ``storage_class``."""
        sc = self.config.storage_classes.get(storage_class)
        if sc is None:
            raise FormatterError(
                f"storage class {storage_class!r} has no formatter; add it to "
                f"storage_classes.yaml (known: {sorted(self.config.storage_classes)})"
            )
        return get_formatter(sc.formatter)

    def relative_path_for(self, ref: DatasetRef, extension: str | None = None) -> str:
        """Return the root-relative POSIX path of ``ref``'s file, from its template.

        Needs no registry: workers compute output paths from the ref alone.

        Raises
        ------
        PathTraversalError
            If a data ID value or the run would make a path outside the root.
        """
        dt = ref.dataset_type
        template = self._templates.get(dt.name, self._templates["default"])
        values: dict[str, Any] = dict(ref.data_id.to_dict())
        values.update(dataset_type=dt.name, storage_class=dt.storage_class, id=str(ref.id))
        rel = template.format(values, ref.run)
        ext = extension if extension is not None else self.formatter_for(dt.storage_class).extension
        rel += ext
        self._inside_root(rel, ref)
        return rel

    def path_for(self, ref: DatasetRef) -> Path:
        """Return the absolute path of ``ref``'s file (see :meth:`relative_path_for`)."""
        return self.root / self.relative_path_for(ref)

    def _inside_root(self, rel: str, what: object) -> Path:
        # Resolve the directory only: a leaf symlink made by symlink-ingest may point out.
        lexical = os.path.normpath(os.path.join(self._root_text, rel))
        folder, name = os.path.split(lexical)
        parent = self._resolved.get(folder)
        if parent is None:  # resolving costs a syscall per component: once per directory
            parent = self._resolved[folder] = os.path.realpath(folder)
        if not (parent + os.sep).startswith(self._root_prefix) or not name:
            raise PathTraversalError(
                f"path {rel!r} for {what} resolves to {os.path.join(parent, name)}, outside "
                f"the datastore root {self.root}; check the data ID values and run name"
            )
        return Path(parent, name)

    def absolute(self, record: DatastoreRecord) -> Path:
        """Return the absolute path of a record's file, refusing paths that leave the root."""
        if os.path.isabs(record.path):
            return Path(record.path)
        self._inside_root(record.path, f"dataset {record.dataset_id}")
        return self.root / record.path

    # --- put / get -----------------------------------------------------------------------

    def put(self, obj: Any, ref: DatasetRef, *, overwrite: bool = False) -> DatastoreRecord:
        """Write ``obj`` as ``ref``'s file, atomically.

        Raises
        ------
        DatastoreError
            If the file already exists and ``overwrite`` is False.
        FormatterError
            If the formatter cannot write ``obj``; no file is left behind.
        """
        formatter = self.formatter_for(ref.dataset_type.storage_class)
        rel = self.relative_path_for(ref, formatter.extension)
        target = self.root / rel
        if target.exists() and not overwrite:
            raise DatastoreError(
                f"file {rel} for {ref} already exists in datastore {self.root}; remove the "
                "dataset first or write to a new RUN"
            )
        tmp = temporary_name(target, formatter.extension)
        try:
            self.prepare_directory(target.parent)
            formatter.write(obj, tmp)
            crash_point("datastore.put.temporary")
            os.replace(tmp, target)
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, DatastoreError):
                raise
            raise FormatterError(
                f"could not write {ref} with formatter {formatter.name!r} to {rel}: {exc}"
            ) from exc
        self.on_undo(lambda: self.delete_file(target))
        crash_point("datastore.put.placed")
        return DatastoreRecord(
            ref.id, rel, formatter.name, ref.dataset_type.storage_class, target.stat().st_size
        )

    def get(self, ref: DatasetRef, record: DatastoreRecord | None = None) -> Any:
        """Read ``ref``'s object (from ``record`` if given, else from its template path).

        Raises
        ------
        FileNotInDatastoreError
            If the file is missing.
        TruncatedFileError
            If the file is shorter than its headers announce (never worth a retry).
        FormatterError
            If the formatter cannot read the file.
        """
        if record is not None:
            path, formatter = self.absolute(record), get_formatter(record.formatter)
        else:
            formatter = self.formatter_for(ref.dataset_type.storage_class)
            path = self.root / self.relative_path_for(ref, formatter.extension)
        if not path.exists():
            raise FileNotInDatastoreError(
                f"no file for {ref} at {path}; the file was removed or never written"
            )
        try:
            return formatter.read(path)
        except TruncatedFileError as exc:
            raise TruncatedFileError(f"could not read {path} for {ref}: {exc}") from exc
        except DatastoreError:
            raise
        except Exception as exc:
            raise FormatterError(f"could not read {path} for {ref}: {exc}") from exc

    def exists(self, ref: DatasetRef, record: DatastoreRecord | None = None) -> bool:
        """Whether ``ref``'s file exists."""
        path = self.absolute(record) if record is not None else self.path_for(ref)
        return path.exists()

    # --- remove --------------------------------------------------------------------------

    def remove(self, ref: DatasetRef, record: DatastoreRecord | None = None) -> None:
        """Delete ``ref``'s file (a no-op if already gone).

        Files ingested with ``direct`` are outside the root and are only forgotten,
        never deleted. Inside :meth:`transaction` the file stays in place until the
        transaction commits and is deleted then: a process killed before the registry
        commit leaves the dataset registered *with* its file (renaming it away first
        would leave a registered dataset without its file). The file is listed in the
        transaction's pending-removal manifest (:meth:`journal_removals`), so a process
        killed after the commit leaves a manifest the next writer finishes.
        """
        if record is not None and os.path.isabs(record.path):
            return
        rel = record.path if record is not None else self.relative_path_for(ref)
        path = self.absolute(record) if record is not None else self.root / rel
        if not (path.exists() or path.is_symlink()):
            return
        txn = self._current()
        if txn is None:
            self.delete_file(path)
            return
        self._manifest(txn).add_file(str(ref.id), rel)

        def delete() -> None:
            self.delete_file(path)
            crash_point("datastore.remove.deleted")

        txn.on_commit.append(delete)

    def remove_folder(self, key: str, rel: str) -> None:
        """Delete folder ``rel`` (root-relative, e.g. a RUN's ``_runs/<run>``) on commit.

        ``key`` names what the folder belongs to (the RUN) for a later repair, which
        deletes it only if the registry no longer has ``key``.
        """
        path = self._inside_root(rel, f"folder of {key}")
        if not (path.exists() or path.is_symlink()):
            return
        txn = self._current()
        if txn is None:
            shutil.rmtree(path, ignore_errors=True)
            return
        self._manifest(txn).add_folder(key, rel)
        txn.on_commit.append(lambda: shutil.rmtree(path, ignore_errors=True))

    def note_removal(self, **about: list[str]) -> None:
        """Say what the current transaction removes (``runs=[...]``, ``dataset_types=[...]``).

        Recorded in its pending-removal manifest, for the report of a later repair.
        """
        txn = self._current()
        if txn is not None:
            self._manifest(txn).note(**about)

    def journal_removals(self) -> None:
        """Write the current transaction's pending-removal manifest, if it removes anything.

        Call it just before the registry commits (:meth:`Butler.transaction` does): the
        manifest ``REPO/_removals/<pid>@<host>.<hex>.json`` lists every file and folder
        to delete, so a kill between the commit and the last deletion is finished by
        the next writer (``rc2_platform/butler_repair.py``). Calling it again writes
        only what was added since.
        """
        txn = self._current()
        if txn is not None and txn.manifest is not None and txn.manifest.size:
            txn.manifest.write()
            crash_point("datastore.removal.journaled")

    def _manifest(self, txn: _Txn) -> Manifest:
        if txn.manifest is None:
            txn.manifest = Manifest(self.root)
        return txn.manifest

    def delete_file(self, path: Path) -> None:
        """Remove the datastore file ``path`` and the folders it leaves empty."""
        path.unlink(missing_ok=True)
        prune_empty_folders(path.parent, self.root)

    # --- transactions --------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Undo this block's file writes if it raises; apply deferred deletes if not.

        Put the registry transaction *inside* this block so that a failed registry
        commit also removes the files::

            with datastore.transaction(), registry.transaction():
                record = datastore.put(obj, ref)
                registry.insert_records([record])

        Nested blocks join the outermost one. State is per thread.
        """
        stack: list[_Txn] = self._local.__dict__.setdefault("stack", [])
        if stack:
            yield
            return
        txn = _Txn()
        stack.append(txn)
        try:
            yield
        except BaseException:
            stack.pop()
            for undo in reversed(txn.undo):
                with contextlib.suppress(OSError):
                    undo()
            if txn.manifest is not None:
                # Written or not, its rows may not have gone: a later repair decides.
                txn.manifest.release()
            raise
        stack.pop()
        crash_point("datastore.transaction.committed")
        failed = 0
        for action in txn.on_commit:
            try:
                action()
            except OSError as exc:
                failed += 1
                _log.warning("could not delete after the commit: %s", exc)
        if txn.manifest is not None:
            crash_point("datastore.removal.done")
            if failed:  # the next writer retries what is left
                txn.manifest.release()
            else:
                txn.manifest.discard()

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` when the current transaction commits (now if there is none)."""
        txn = self._current()
        if txn is None:
            action()
        else:
            txn.on_commit.append(action)

    def prepare_directory(self, directory: Path) -> None:
        """Create ``directory`` and, once per process, remove temporaries of dead writers.

        A ``kill -9`` between writing a temporary file and renaming it into place leaves
        the temporary behind; the next writer into that directory removes it.
        """
        directory.mkdir(parents=True, exist_ok=True)
        if directory not in self._swept:
            sweep_temporaries(directory)
            self._swept.add(directory)

    def _current(self) -> _Txn | None:
        stack: list[_Txn] = self._local.__dict__.get("stack", [])
        return stack[-1] if stack else None

    def on_undo(self, action: Callable[[], None]) -> None:
        """Run ``action`` if the current transaction fails (nothing without one)."""
        txn = self._current()
        if txn is not None:
            txn.undo.append(action)

    # --- ingest --------------------------------------------------------------------------

    def ingest(
        self,
        path: Path | str,
        ref: DatasetRef,
        transfer: Transfer | str = Transfer.AUTO,
        *,
        formatter: str | None = None,
        repair: bool = False,
    ) -> DatastoreRecord:
        """Bring an existing file in as ``ref``'s file.

        Parameters
        ----------
        path : Path or str
            The existing file.
        ref : DatasetRef
            The dataset it becomes.
        transfer : Transfer or str
            ``direct``, ``copy``, ``hardlink``, ``symlink``, ``move`` or ``auto``.
        formatter : str, optional
            Formatter name to record; default: the storage class's formatter.
        repair : bool
            The caller knows ``ref`` has no registry row, so a file already at its path
            was left by an interrupted ingest or write: adopt it if it is identical to
            what this transfer makes (same link target, inode, or size and SHA-256),
            otherwise replace it. Without ``repair`` an existing file is refused.

        Notes
        -----
        ``move`` links (or copies) the file in and deletes the source only when the
        enclosing transaction commits, so a killed ingest keeps the source.

        Raises
        ------
        DatastoreError
            Unknown transfer mode, missing source, target exists, or the link failed.
        """
        from rc2_platform.datastore._ingest import ingest_file

        return ingest_file(self, Path(path), ref, _transfer(transfer), formatter, repair=repair)

    def finish_move(self, path: Path | str, record: DatastoreRecord) -> bool:
        """Finish a ``move`` ingest killed after its commit: delete the source if identical.

        ``record`` is the registered dataset's file. The source ``path`` is deleted when
        the enclosing transaction commits, and only if that file is another path with
        the same inode, or the same size and SHA-256 (never when it is the file itself
        or a link to it). Returns whether it will be.
        """
        from rc2_platform.datastore._ingest import finish_move

        return finish_move(self, Path(path).absolute(), record)


def _transfer(value: Transfer | str) -> Transfer:
    try:
        return Transfer(value)
    except ValueError:
        raise DatastoreError(
            f"unknown transfer mode {value!r}; use one of {[t.value for t in Transfer]}"
        ) from None
