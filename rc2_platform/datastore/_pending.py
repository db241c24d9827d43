"""Pending-removal manifests: what a removal killed after its commit still has to delete.

A removal deletes registry rows in a transaction and the files only once it commits. A
``kill -9`` between the commit and the last deletion would leave files nothing
references, and re-running the removal would find nothing to remove. So, before the
registry commits, the datastore writes a *manifest* of everything it will delete:

``REPO/_removals/<pid>@<host>.<hex>.json``, written to a temporary name, flushed and
renamed (never half-written), holding an exclusive ``flock`` for as long as its writer
runs. Its entries are paths relative to the datastore root, each with a *key* the
caller can check against the registry (a dataset id, a RUN name). After the commit the
files go, then the manifest. Whoever finds a manifest whose writer is gone (its
``flock`` is free) decides with the registry whether the rows went (the transaction
committed: delete what no record names) or stayed (it did not: discard the manifest);
see ``rc2_platform/butler_repair.py``. A path is never deleted outside the root.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from rc2_platform.datastore._repair import (
    HOST,
    prune_empty_folders,
    sweep_temporaries,
    temporary_name,
)
from rc2_platform.errors import DatastoreError

__all__ = ["MANIFEST_DIR", "Manifest", "pending_manifests", "safe_relative"]

_log = logging.getLogger(__name__)

#: Folder of the manifests, under the datastore root (``_``: not a dataset folder).
MANIFEST_DIR = "_removals"
_FORMAT = "rc2_pending_removal"
_VERSION = 1


def safe_relative(root: Path, rel: str) -> Path | None:
    """``root / rel`` if ``rel`` is a plain relative path staying inside ``root``, else None.

    The parent folder is resolved (symlinked folders that leave the root are refused);
    the leaf is not, so a symlink file inside the root is deleted as a link.
    """
    if not rel or os.path.isabs(rel) or "\x00" in rel:
        return None
    folder, name = os.path.split(os.path.normpath(os.path.join(root, rel)))
    parent, root_text = os.path.realpath(folder), str(root)
    inside = parent == root_text or parent.startswith(root_text + os.sep)
    if name in ("", ".", "..") or not inside:
        return None
    return Path(parent, name)


@dataclass
class Manifest:
    """One pending removal: files and folders to delete once its transaction committed.

    Parameters
    ----------
    root : Path
        The datastore root every entry is relative to.
    files : list of [key, path]
        Files to delete; ``key`` is what the caller checks (a dataset id).
    folders : list of [key, path]
        Folders to delete whole (a RUN's ``_runs/<run>``; ``key`` is the RUN).
    about : dict
        What the removal was (``runs``, ``dataset_types``), for reports.
    """

    root: Path
    files: list[list[str]] = field(default_factory=list)
    folders: list[list[str]] = field(default_factory=list)
    about: dict[str, list[str]] = field(default_factory=dict)
    path: Path | None = None
    writer: str = ""
    created: float = 0.0
    _fd: int | None = None
    _dirty: bool = True

    @property
    def size(self) -> int:
        """Number of entries (files and folders)."""
        return len(self.files) + len(self.folders)

    def add_file(self, key: str, rel: str) -> None:
        """List file ``rel`` (root-relative), deleted if ``key``'s rows are gone."""
        self.files.append([key, rel])
        self._dirty = True

    def add_folder(self, key: str, rel: str) -> None:
        """List folder ``rel`` (root-relative), deleted whole if ``key``'s rows are gone."""
        self.folders.append([key, rel])
        self._dirty = True

    def note(self, **about: list[str]) -> None:
        """Merge ``about`` (lists of names) into what the removal is said to be."""
        for key, names in about.items():
            known = self.about.setdefault(key, [])
            known.extend(n for n in names if n not in known)
        self._dirty = True

    def write(self) -> None:
        """Write (or rewrite with new entries) the manifest, atomically, holding its lock."""
        if not self._dirty:
            return
        folder = self.root / MANIFEST_DIR
        folder.mkdir(exist_ok=True)
        target = self.path or folder / f"{os.getpid()}@{HOST}.{uuid.uuid4().hex[:12]}.json"
        tmp = temporary_name(target)
        document = {
            _FORMAT: _VERSION,
            "writer": f"pid {os.getpid()} on {HOST}",
            "created": self.created or time.time(),
            "about": self.about,
            "files": self.files,
            "folders": self.folders,
        }
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = memoryview(json.dumps(document, separators=(",", ":")).encode())
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
            os.replace(tmp, target)
            _fsync_folder(folder)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        old, self._fd, self.path = self._fd, fd, target
        if old is not None:
            os.close(old)
        self._dirty = False

    def discard(self) -> None:
        """Delete the manifest file and release its lock (nothing left to do)."""
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self.release()

    def release(self) -> None:
        """Release the lock, keeping the file (work left: a later repair finishes it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def delete_file(self, rel: str, *, dry_run: bool = False) -> bool:
        """Delete one listed file and the folders it leaves empty; False if already gone.

        ``dry_run``: only say whether there is a file to delete.

        Raises
        ------
        DatastoreError
            ``rel`` leaves the root, or the file cannot be deleted.
        """
        path = safe_relative(self.root, rel)
        if path is None:
            raise DatastoreError(
                f"{rel!r} is not a path inside the datastore root {self.root}; left alone"
            )
        if dry_run:
            return path.exists() or path.is_symlink()
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise DatastoreError(f"could not delete {rel}: {exc.strerror or exc}") from None
        prune_empty_folders(path.parent, self.root)
        return True

    def delete_folder(self, rel: str) -> str | None:
        """Delete one listed folder with its content; an error text or None."""
        path = safe_relative(self.root, rel)
        if path is None or path == self.root or rel.split("/")[0] == MANIFEST_DIR:
            return f"{rel!r} is not a folder inside the datastore root {self.root}; left alone"
        if path.is_symlink():
            path.unlink()
            return None
        errors: list[str] = []
        shutil.rmtree(path, onerror=lambda _f, p, e: errors.append(f"{p}: {e[1]}"))
        if errors and path.exists():
            return f"could not delete {rel}: {errors[0]}"
        return None


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(root: Path, path: Path, fd: int) -> Manifest:
    """Parse a manifest whose lock ``fd`` this process holds."""
    try:
        with os.fdopen(os.dup(fd), "rb") as fh:
            doc: Any = json.loads(fh.read() or b"null")
    except (OSError, ValueError) as exc:
        raise DatastoreError(
            f"pending-removal manifest {path} is unreadable ({exc}); it was not written by "
            "rc2 (manifests are renamed into place whole): move it away and run `rc2 fsck`"
        ) from None
    ok = isinstance(doc, dict) and doc.get(_FORMAT) == _VERSION
    files, folders, about = (doc.get(k) if ok else None for k in ("files", "folders", "about"))
    if not (_pairs(files) and _pairs(folders) and isinstance(about, dict)):
        raise DatastoreError(
            f"pending-removal manifest {path} is not an rc2 manifest of version {_VERSION}; "
            "move it away and run `rc2 fsck`"
        )
    return Manifest(
        root,
        list(files),
        list(folders),
        {str(k): [str(n) for n in v] for k, v in about.items() if isinstance(v, list)},
        path,
        str(doc.get("writer", "")),
        float(doc.get("created") or 0.0),
        fd,
    )


def _pairs(value: Any) -> TypeGuard[list[list[str]]]:
    return isinstance(value, list) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in value
    )


def pending_manifests(root: Path) -> Iterator[Manifest]:
    """The manifests under ``root`` whose writer is gone, each yielded with its lock held.

    A manifest still locked (its removal is running, here or in another process) is
    skipped, as is one replaced or deleted while we waited. The caller must
    :meth:`~Manifest.discard` or :meth:`~Manifest.release` each one.

    Raises
    ------
    DatastoreError
        A file in ``_removals/`` that is not a manifest (named, with what to do), once
        every readable manifest was yielded.
    """
    folder = root / MANIFEST_DIR
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json") and n[0] != ".")
    except FileNotFoundError:
        return
    if len(names) < len(os.listdir(folder)):
        sweep_temporaries(folder)  # manifests half-written by a killed writer
    bad: list[str] = []
    for name in names:
        path = folder / name
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.ENOENT):
                continue  # its removal is running, or it just ended
            raise
        if not same:
            os.close(fd)
            continue
        try:
            manifest = _read(root, path, fd)
        except DatastoreError as exc:
            os.close(fd)
            bad.append(str(exc))
            continue
        except BaseException:
            os.close(fd)
            raise
        yield manifest
    if bad:  # after the good ones: one foreign file does not block the others
        raise DatastoreError(bad[0] + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
