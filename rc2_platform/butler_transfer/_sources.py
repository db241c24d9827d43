"""Where a load reads its files from, and which of them it may read.

An export file is often someone else's: the paths it names must not make an import copy
``/etc/passwd`` or ``../../secret`` into a repository. :class:`ExportFiles` reads only
files inside the export's folder (the folder holding the export file): ``files_root``
and every path relative, no ``..`` leading out, no symlink leading out. A transfer
(:class:`RepositoryFiles`) reads only files inside the source datastore's root: a file
ingested in place with ``direct`` (an absolute path in the source registry) is outside
it. Either reads outside files only when the operator allows it (``allow_outside``,
``--allow-outside-files``), for an export or repository they trust.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from rc2_platform.core.datastore_record import DatastoreRecord
from rc2_platform.errors import OutsideFilesError

if TYPE_CHECKING:
    from rc2_platform.butler import Butler

#: The command-line flag that allows reading files outside an export or datastore.
ALLOW_OUTSIDE_FLAG = "--allow-outside-files"


class FileSource:
    """Where each datastore record's file is (base class: no restriction).

    ``origin`` names the export file or repository in messages.
    """

    origin: str = ""

    def refusal(self, record: DatastoreRecord) -> str | None:
        """Why ``record``'s file may not be read (a sentence naming the path), or None."""
        return None

    def locate(self, record: DatastoreRecord) -> Path:
        """The file's path, not checked."""
        raise NotImplementedError

    def __call__(self, record: DatastoreRecord) -> Path:
        """The file's path; refuses (:class:`OutsideFilesError`) one that may not be read."""
        if (why := self.refusal(record)) is not None:
            raise OutsideFilesError(f"{self.origin}: dataset {record.dataset_id} {why}")
        return self.locate(record)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class ExportFiles(FileSource):
    """The files of an export file, confined to its folder unless ``allow_outside``."""

    def __init__(self, export_file: Path, files_root: str, *, allow_outside: bool = False):
        self.origin = f"export file {export_file}"
        self.folder = os.path.realpath(export_file.absolute().parent)
        self.files_root = files_root
        self.root = Path(self.folder, files_root)  # an absolute files_root wins
        self.allow_outside = allow_outside
        self._folders: dict[str, str] = {}  # folder -> its real path (once per folder)

    def locate(self, record: DatastoreRecord) -> Path:
        path = record.path
        return Path(path) if os.path.isabs(path) else self.root / path

    def refusal(self, record: DatastoreRecord) -> str | None:
        if self.allow_outside:
            return None
        path = record.path
        if os.path.isabs(path):
            why = f"names the absolute path {path!r}"
        elif os.path.isabs(self.files_root):
            why = f"names {path!r} under files_root {self.files_root!r}, an absolute path"
        elif not _inside(os.path.normpath(self.root / path), self.folder):
            why = f"names {path!r} (files_root {self.files_root!r}), which '..' leads out of the export's folder"
        elif not _inside(target := self._real(self.root / path), self.folder):
            why = f"names {path!r}, a symlink (or under one) to {target}, "
            why += "out of the export's folder"
        else:
            return None
        return (
            f"{why}; an export's files must be relative paths inside its folder "
            f"{self.folder} (an export made without --with-files, with --transfer symlink or "
            "of `direct`-ingested files names others): read files from outside it only from "
            f"an export you trust, with {ALLOW_OUTSIDE_FLAG} (nothing was written)"
        )

    def _real(self, path: Path) -> str:
        """``os.path.realpath(path)``, resolving each folder once (not once per file)."""
        folder, name = os.path.split(os.path.normpath(path))
        real = self._folders.get(folder)
        if real is None:
            real = self._folders[folder] = os.path.realpath(folder)
        full = os.path.join(real, name)
        return os.path.realpath(full) if os.path.islink(full) else full


class RepositoryFiles(FileSource):
    """The files of a source repository, confined to its datastore root unless
    ``allow_outside`` (a ``direct`` ingest's absolute path is outside it)."""

    def __init__(self, butler: Butler, *, allow_outside: bool = False):
        self.origin = f"repository {butler.root}"
        self.datastore = butler.datastore
        self.allow_outside = allow_outside

    def locate(self, record: DatastoreRecord) -> Path:
        # Relative paths leaving the root are refused here, flag or not (PathTraversalError).
        return self.datastore.absolute(record)

    def refusal(self, record: DatastoreRecord) -> str | None:
        if self.allow_outside or not os.path.isabs(record.path):
            return None
        return (
            f"has its file at {record.path!r}, outside the datastore root "
            f"{self.datastore.root} (ingested in place with `direct`): read files from "
            f"outside a repository only from one you trust, with {ALLOW_OUTSIDE_FLAG} "
            "(nothing was written)"
        )
