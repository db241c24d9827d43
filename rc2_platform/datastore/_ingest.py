"""Transfer modes of :meth:`FileDatastore.ingest`."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from rc2_platform.core.crash_points import crash_point
from rc2_platform.datastore._repair import identical, temporary_name
from rc2_platform.errors import DatastoreError

if TYPE_CHECKING:
    from rc2_platform.core.dataset_types import DatasetRef
    from rc2_platform.datastore.file_datastore import DatastoreRecord, FileDatastore, Transfer

_log = logging.getLogger(__name__)
_COMPRESSED = {".fz", ".gz", ".bz2"}


def _extension(source: Path, default: str) -> str:
    suffixes = source.suffixes
    if suffixes and suffixes[-1].lower() in _COMPRESSED and len(suffixes) >= 2:
        return "".join(suffixes[-2:])
    return suffixes[-1] if suffixes else default


def ingest_file(
    store: FileDatastore,
    source: Path,
    ref: DatasetRef,
    transfer: Transfer,
    formatter_name: str | None,
    *,
    repair: bool = False,
) -> DatastoreRecord:
    """Implement :meth:`FileDatastore.ingest` (see there)."""
    from rc2_platform.datastore.file_datastore import DatastoreRecord, Transfer
    from rc2_platform.datastore.formatters import get_formatter

    formatter = (
        get_formatter(formatter_name)
        if formatter_name
        else store.formatter_for(ref.dataset_type.storage_class)
    )
    if not source.is_file():
        raise DatastoreError(f"cannot ingest {source} as {ref}: no such file")
    source = source.absolute()
    resolved = source.resolve()

    def record(rel: str, size_of: Path) -> DatastoreRecord:
        return DatastoreRecord(
            ref.id, rel, formatter.name, ref.dataset_type.storage_class, size_of.stat().st_size
        )

    if transfer is Transfer.DIRECT:
        return record(str(resolved), resolved)
    if transfer is Transfer.AUTO and resolved.is_relative_to(store.root):
        return record(resolved.relative_to(store.root).as_posix(), resolved)

    rel = store.relative_path_for(ref, _extension(source, formatter.extension))
    target = store.root / rel
    try:
        store.prepare_directory(target.parent)
    except OSError as exc:
        raise DatastoreError(f"cannot ingest {source} as {ref}: {exc}") from exc
    if target.exists() or target.is_symlink():
        if not repair:
            raise DatastoreError(
                f"cannot ingest {source} as {ref}: {rel} already exists in the datastore; "
                "remove the dataset first"
            )
        if identical(target, resolved, symlink=transfer is Transfer.SYMLINK):
            # Left by an interrupted ingest of this very file: adopt it.
            _log.info("adopting %s, left by an interrupted ingest of %s", rel, source)
            crash_point("datastore.ingest.adopted")
            _after_placing(store, source, target, transfer)
            return record(rel, target)
        _log.warning("replacing %s, left by an interrupted write, with %s", rel, source)
    tmp = temporary_name(target)
    try:
        _transfer_to(resolved, tmp, transfer)
        crash_point("datastore.ingest.temporary")
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DatastoreError(
            f"cannot ingest {source} as {ref} with transfer {transfer.value!r}: {exc}"
        ) from exc
    crash_point("datastore.ingest.placed")
    _after_placing(store, source, target, transfer)
    return record(rel, target)


def _after_placing(store: FileDatastore, source: Path, target: Path, transfer: Transfer) -> None:
    """Undo = delete the datastore file; ``move`` deletes the source once committed."""
    from rc2_platform.datastore.file_datastore import Transfer

    store.on_undo(lambda: store.delete_file(target))
    if transfer is Transfer.MOVE:
        store.after_commit(lambda: _delete_source(source))


def _delete_source(source: Path) -> None:
    source.unlink(missing_ok=True)
    crash_point("datastore.ingest.source_deleted")


def finish_move(store: FileDatastore, source: Path, record: DatastoreRecord) -> bool:
    """Delete ``source`` after the commit if its dataset's file ``record`` is identical.

    For a ``move`` ingest of a dataset that is already registered: its move was killed
    after the registry commit and before the source went. The source goes only if the
    datastore file is another path (not a link) with the same inode, or the same size
    and SHA-256; returns whether it will.
    """
    if os.path.isabs(record.path) or not (source.is_file() or source.is_symlink()):
        return False
    target = store.absolute(record)
    resolved = source.resolve()
    if target.resolve() == resolved or not identical(target, resolved, symlink=False):
        return False
    store.after_commit(lambda: _delete_source(source))
    return True


def _transfer_to(resolved: Path, tmp: Path, transfer: Transfer) -> None:
    """Put ``resolved``'s bytes (or a link to it) at ``tmp``.

    ``move`` links (or copies) here; the source is deleted only after the registry
    commits (see :func:`_after_placing`), so a killed ingest never loses the file.
    """
    from rc2_platform.datastore.file_datastore import Transfer

    if transfer is Transfer.COPY:
        shutil.copy2(resolved, tmp)
    elif transfer is Transfer.HARDLINK:
        os.link(resolved, tmp)
    elif transfer is Transfer.SYMLINK:
        os.symlink(resolved, tmp)
    elif transfer in (Transfer.MOVE, Transfer.AUTO):
        try:
            os.link(resolved, tmp)
        except OSError:
            shutil.copy2(resolved, tmp)
    else:  # pragma: no cover - DIRECT handled by the caller
        raise DatastoreError(f"transfer {transfer.value!r} does not move files")
