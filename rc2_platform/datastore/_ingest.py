"""Transfer modes of :meth:`FileDatastore.ingest`."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from rc2_platform.errors import DatastoreError

if TYPE_CHECKING:
    from rc2_platform.core.dataset_types import DatasetRef
    from rc2_platform.datastore.file_datastore import DatastoreRecord, FileDatastore, Transfer

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
    if target.exists() or target.is_symlink():
        raise DatastoreError(
            f"cannot ingest {source} as {ref}: {rel} already exists in the datastore; "
            "remove the dataset first"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        _transfer_to(source, resolved, tmp, transfer)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DatastoreError(
            f"cannot ingest {source} as {ref} with transfer {transfer.value!r}: {exc}"
        ) from exc
    if transfer is Transfer.MOVE:

        def move_back() -> None:
            shutil.move(target, source)

        store._on_undo(move_back)
    else:
        store._on_undo(lambda: store._delete(target))
    return record(rel, target)


def _transfer_to(source: Path, resolved: Path, tmp: Path, transfer: Transfer) -> None:
    from rc2_platform.datastore.file_datastore import Transfer

    if transfer is Transfer.COPY:
        shutil.copy2(resolved, tmp)
    elif transfer is Transfer.HARDLINK:
        os.link(resolved, tmp)
    elif transfer is Transfer.SYMLINK:
        os.symlink(resolved, tmp)
    elif transfer is Transfer.MOVE:
        shutil.move(source, tmp)
    elif transfer is Transfer.AUTO:
        try:
            os.link(resolved, tmp)
        except OSError:
            shutil.copy2(resolved, tmp)
    else:  # pragma: no cover - DIRECT handled by the caller
        raise DatastoreError(f"transfer {transfer.value!r} does not move files")
