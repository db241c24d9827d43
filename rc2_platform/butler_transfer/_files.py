"""Placing files: into an export folder or a destination datastore, undone on failure.

A file keeps its datastore path (relative to the root; a file ingested in place with
``direct`` gets ``_direct/<id><suffix>``), as LSST's transfers do. Each file is written
under a temporary name and renamed, so a failure never leaves half a file.
"""

from __future__ import annotations

import os
import shutil
import uuid
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


def place(source: Path, target: Path, mode: str) -> None:
    """Copy or link ``source`` to ``target`` (temporary name, then rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
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

    def add(self, source: Path, target: Path, mode: str) -> None:
        """Place one file and remember it."""
        place(source, target, mode)
        self.paths.append(target)

    def undo(self) -> None:
        """Remove every file placed."""
        for p in reversed(self.paths):
            p.unlink(missing_ok=True)
        self.paths.clear()
