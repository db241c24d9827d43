"""Copying datasets' files out of a repository: into a folder, or one zip with an index.

Paths are kept relative to the datastore root (``<run>/<dataset type>/...``), so the
copy looks like the repository's own layout. Nothing is overwritten: every target is
checked before the first file is written.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rc2_platform.errors import ArtifactExistsError, ConfigError, FileNotInDatastoreError

if TYPE_CHECKING:
    from rc2_platform.butler import Butler
    from rc2_platform.core import DatasetRef, DatastoreRecord

#: Transfer modes of ``retrieve_artifacts`` (``link`` is a hard link).
TRANSFERS = ("copy", "link", "symlink")
#: Name of the index inside a zip written by ``retrieve_artifacts(zip=True)``.
ZIP_INDEX = "rc2_index.json"
#: Version of the index format.
ZIP_INDEX_VERSION = 1


@dataclass
class RetrieveResult:
    """Files retrieved (in a dry run: to retrieve), one row per dataset."""

    destination: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False
    zip: bool = False


def _relative(butler: Butler, ref: DatasetRef, record: DatastoreRecord) -> str:
    if not os.path.isabs(record.path):
        return record.path
    # Ingested in place (``direct``): file it where the templates would have put it.
    return butler.datastore.relative_path_for(ref, "".join(Path(record.path).suffixes))


def _find(
    butler: Butler,
    collections: Sequence[str],
    dataset_types: Sequence[str] | None,
    where: str,
    bind: Mapping[str, Any] | None,
    find_first: bool,
) -> list[DatasetRef]:
    reg = butler.registry
    types = (
        [reg.get_dataset_type(t) for t in dataset_types]
        if dataset_types
        else reg.query_dataset_types()
    )
    if dataset_types:
        reg.check_where_dimensions(where, types)
    seen: dict[Any, DatasetRef] = {}
    for dt in types:
        found = reg.query_datasets(dt, list(collections), where, bind, find_first)
        if found and not dataset_types:
            reg.check_where_dimensions(where, [dt])
        for ref in found:
            seen.setdefault(ref.id, ref)
    return sorted(seen.values(), key=lambda r: (r.dataset_type.name, r.run, str(r.id)))


def retrieve_artifacts(
    butler: Butler,
    destination: str | Path,
    collections: Sequence[str],
    *,
    dataset_types: Sequence[str] | None = None,
    where: str = "",
    bind: Mapping[str, Any] | None = None,
    find_first: bool = False,
    transfer: str = "copy",
    zip: bool = False,
    dry_run: bool = False,
) -> RetrieveResult:
    """Copy (or link) the files of the datasets found into ``destination``.

    Parameters
    ----------
    butler : Butler
        The repository.
    destination : str or Path
        A folder (created if missing), or with ``zip`` the zip file to write.
    collections : sequence of str
        Collections searched (every match unless ``find_first``).
    dataset_types : sequence of str, optional
        Only these types (default: every type).
    where, bind
        A where-expression over the types' dimensions, and its bind values. It may
        constrain only dimensions every type in ``dataset_types`` has (required or
        implied) and their records' columns; without ``dataset_types``, every type any
        of whose datasets it selects.
    find_first : bool
        Only the first dataset per data ID along ``collections``.
    transfer : str
        ``copy``, ``link`` (hard link) or ``symlink``; a zip always copies.
    zip : bool
        Write one zip holding the files and ``rc2_index.json`` (one entry per dataset:
        id, type, RUN, data ID, path, storage class, formatter, size).
    dry_run : bool
        Report what would be written; write nothing.

    Raises
    ------
    ArtifactExistsError
        A target file (or the zip) exists; nothing was written.
    FileNotInDatastoreError
        A dataset's file is missing from the datastore; nothing was written.
    ExpressionError
        ``where`` constrains a dimension a type lacks (it would join that dimension
        instead of selecting data IDs, retrieving every dataset of the type); nothing
        was written.
    """
    if transfer not in TRANSFERS:
        raise ConfigError(f"--transfer {transfer!r} is unknown; use one of {list(TRANSFERS)}")
    if zip and transfer != "copy":
        raise ConfigError(f"--zip copies the files into the zip; --transfer {transfer} cannot")
    dest = Path(destination)
    refs = _find(butler, collections, dataset_types, where, bind, find_first)
    records = butler.datastore_records(refs)
    plan: list[tuple[DatasetRef, DatastoreRecord, Path, str]] = []
    missing = []
    for ref in refs:
        rec = records.get(ref.id)
        if rec is None:
            continue  # registered without a file (never stored, or unstored)
        source = butler.datastore.absolute(rec)
        if not source.exists():
            missing.append(str(source))
        plan.append((ref, rec, source, _relative(butler, ref, rec)))
    if missing:
        raise FileNotInDatastoreError(
            f"{len(missing)} dataset file(s) are missing from the datastore, e.g. {missing[0]}; "
            "nothing was retrieved"
        )
    _refuse_overwrite(dest, [rel for *_, rel in plan], zip)
    result = RetrieveResult(dest, dry_run=dry_run, zip=zip)
    result.rows = [_row(ref, rec, rel) for ref, rec, _, rel in plan]
    if dry_run or not plan:
        return result
    if zip:
        _write_zip(dest, [(src, rel) for _, _, src, rel in plan], result.rows)
    else:
        _write_files(dest, [(src, rel) for _, _, src, rel in plan], transfer)
    return result


def _row(ref: DatasetRef, rec: DatastoreRecord, rel: str) -> dict[str, Any]:
    return {
        "dataset_type": ref.dataset_type.name,
        "run": ref.run,
        "data_id": ref.data_id.to_dict(),
        "id": str(ref.id),
        "path": rel,
        "storage_class": rec.storage_class,
        "formatter": rec.formatter,
        "file_size": rec.file_size,
    }


def _refuse_overwrite(dest: Path, rels: list[str], zip: bool) -> None:
    if zip:
        if dest.exists() or dest.is_symlink():
            raise ArtifactExistsError(f"{dest} already exists; give a new zip file name")
        return
    if dest.exists() and not dest.is_dir():
        raise ArtifactExistsError(f"{dest} exists and is not a folder; give a folder")
    clashes = [rel for rel in rels if (dest / rel).exists() or (dest / rel).is_symlink()]
    if clashes:
        raise ArtifactExistsError(
            f"{len(clashes)} file(s) already exist under {dest}, e.g. {dest / clashes[0]}; "
            "nothing was retrieved (choose an empty folder or remove them)"
        )


def _write_files(dest: Path, files: list[tuple[Path, str]], transfer: str) -> None:
    for source, rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if transfer == "copy":
            shutil.copy2(source, target)
        elif transfer == "link":
            os.link(source, target)
        else:
            os.symlink(source.resolve(), target)


def _write_zip(dest: Path, files: list[tuple[Path, str]], rows: list[dict[str, Any]]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for source, rel in files:
                zf.write(source, rel)
            index = {"version": ZIP_INDEX_VERSION, "datasets": rows}
            zf.writestr(ZIP_INDEX, json.dumps(index, indent=1))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
