"""Placing files: into an export folder or a destination datastore, undone on failure.

A file keeps its datastore path (relative to the root; a file ingested in place with
``direct`` gets ``_direct/<id><suffix>``), as LSST's transfers do. Each file is written
under a temporary name and renamed, so a failure never leaves half a file.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

from rc2_platform.core.datastore_record import DatastoreRecord
from rc2_platform.errors import DatastoreError

#: Transfer modes (``link``: hard link, else copy).
TRANSFER_MODES = ("copy", "link", "symlink", "hardlink")


def check_mode(mode: str) -> None:
    """Refuse an unknown transfer mode."""
    if mode not in TRANSFER_MODES:
        raise DatastoreError(f"unknown transfer mode {mode!r}; use one of {list(TRANSFER_MODES)}")


def relative_path(record: DatastoreRecord) -> str:
    """Where a record's file goes in another datastore or an export folder."""
    if os.path.isabs(record.path):
        return f"_direct/{record.dataset_id}{Path(record.path).suffix}"
    return record.path


#: Temporary names: this process's id and a counter (unique without a random number each).
_TMP_COUNTER = itertools.count()


def place(source: Path, target: Path, mode: str, made: set[str] | None = None) -> None:
    """Copy or link ``source`` to ``target`` (temporary name, then rename).

    ``made``: folders known to exist (filled as they are made; saves a ``mkdir`` per file).
    """
    folder = os.path.dirname(target)
    if made is None or folder not in made:
        os.makedirs(folder, exist_ok=True)
        if made is not None:
            made.add(folder)
    tmp = Path(f"{folder}/.{target.name}.{os.getpid()}-{next(_TMP_COUNTER)}.tmp")
    try:
        if mode == "symlink":
            os.symlink(source.resolve(), tmp)
        elif mode in ("hardlink", "link"):
            try:
                os.link(source, tmp)
            except OSError:
                if mode == "hardlink":
                    raise
                shutil.copy2(source, tmp)
        else:
            shutil.copy2(source, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DatastoreError(f"cannot {mode} {source} to {target}: {exc}") from exc


class PlacedFiles:
    """Files written by one load; :meth:`undo` removes them again."""

    def __init__(self) -> None:
        self.paths: list[Path] = []
        self._made: set[str] = set()

    def add(self, source: Path, target: Path, mode: str) -> None:
        """Place one file and remember it."""
        place(source, target, mode, self._made)
        self.paths.append(target)

    def undo(self) -> None:
        """Remove every file placed."""
        for p in reversed(self.paths):
            p.unlink(missing_ok=True)
        self.paths.clear()
