"""Load a bundle into a repository: checks first, then one transaction.

Everything that can be refused is checked before anything is written: dataset types
defined otherwise in the destination, collections of another type, chains with other
children, files missing from the source. Then the files are placed (at their source
datastore paths; one already there is kept) and, inside one butler transaction, the
rows: dataset types, dimension records, collections, datasets with their datastore
records (column-wise, :meth:`Registry.import_dataset_columns`; identical existing ones
are skipped, so a load is idempotent), TAGGED membership, validity ranges, chains. If
anything fails the rows roll back and the placed files are removed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rc2_platform.butler_transfer._bundle import Bundle
from rc2_platform.butler_transfer._files import PlacedFiles, check_mode, relative_path
from rc2_platform.butler_transfer._records_check import check_records
from rc2_platform.core import CollectionType, DatasetRef, Timespan
from rc2_platform.core.datastore_record import DatastoreRecord
from rc2_platform.errors import (
    CollectionTypeError,
    ConflictingDefinitionError,
    FileNotInDatastoreError,
    MissingCollectionError,
    MissingDatasetTypeError,
)

if TYPE_CHECKING:
    from rc2_platform.butler import Butler

FileSource = Callable[[DatastoreRecord], Path]


@dataclass
class LoadReport:
    """What a load wrote (or, with ``dry_run``, would consider)."""

    counts: dict[str, int] = field(default_factory=dict)
    new_datasets: int = 0
    files_transferred: int = 0
    registry_seconds: float = 0.0
    file_seconds: float = 0.0
    dry_run: bool = False
    #: Seconds per step of the load (dataset types, records, ..., chains).
    phases: dict[str, float] = field(default_factory=dict)
    #: CPU seconds of this process per step (the database server's are not in them).
    cpu_phases: dict[str, float] = field(default_factory=dict)


def check(butler: Butler, bundle: Bundle, source: FileSource | None) -> None:
    """Refuse the load, before writing anything, if the destination disagrees with it."""
    reg = butler.registry
    for dt in bundle.dataset_types:
        try:
            existing = reg.get_dataset_type(dt.name)
        except MissingDatasetTypeError:
            continue
        if existing != dt:
            raise ConflictingDefinitionError(
                f"dataset type {dt.name!r} is {_describe(existing)} in {butler.root} but "
                f"{_describe(dt)} in the data to import; rename one of them (nothing was written)"
            )
    for entry in bundle.collections:
        try:
            ctype = reg.get_collection_type(entry.name)
        except MissingCollectionError:
            continue
        if ctype is not entry.type:
            raise CollectionTypeError(
                f"collection {entry.name!r} is {ctype.name} in {butler.root} but {entry.type.name} "
                "in the data to import; rename one of them (nothing was written)"
            )
        if ctype is CollectionType.CHAINED:
            children = reg.get_collection_chain(entry.name)
            if children and children != entry.children:
                raise CollectionTypeError(
                    f"chain {entry.name!r} is {children} in {butler.root} but {entry.children} "
                    "in the data to import; redefine it after the import (nothing was written)"
                )
    check_records(butler, bundle.records)
    if source is not None:
        by_id = {r.id: r for r in bundle.refs}
        for rid, rec in bundle.files.items():
            path = source(rec)
            if not path.is_file():
                ref = by_id[rid]
                raise FileNotInDatastoreError(
                    f"dataset {rid} ({ref.dataset_type.name} {ref.data_id.to_dict()} in "
                    f"{ref.run}) has no file at {path}; nothing was written"
                )


def _describe(dt: Any) -> str:
    calib = ", calibration" if dt.is_calibration else ""
    return f"({', '.join(dt.dimensions)}; {dt.storage_class}{calib})"


def load(
    butler: Butler,
    bundle: Bundle,
    source: FileSource | None,
    *,
    transfer: str = "copy",
    dry_run: bool = False,
) -> LoadReport:
    """Write ``bundle`` into ``butler`` (see the module docstring).

    Parameters
    ----------
    butler : Butler
        The destination repository.
    bundle : Bundle
        What to write (already checked for universe and schema version).
    source : callable, optional
        Where the file of a datastore record is; None: datasets without files.
    transfer : str
        ``copy``, ``link`` (hard link, else copy), ``symlink`` or ``hardlink``.
    dry_run : bool
        Check only.
    """
    check_mode(transfer)
    report = LoadReport(counts=bundle.counts(), dry_run=dry_run)
    check(butler, bundle, source)
    if dry_run:
        return report
    reg = butler.registry
    start = time.perf_counter()
    clock = _Clock(report.phases, report.cpu_phases)
    placed = PlacedFiles()
    try:
        if source is not None:
            _place_files(butler, bundle, source, transfer, placed)
            report.files_transferred = len(placed.paths)
        file_time = clock.lap("files")
        with butler.transaction():
            # Dataset types first: on MariaDB a new one's tables commit implicitly.
            for dt in bundle.dataset_types:
                reg.register_dataset_type(dt)
            clock.lap("dataset_types")
            for element, rows in bundle.records.items():
                reg.insert_dimension_records(element, rows, skip_existing=True)
            clock.lap("dimension_records")
            for entry in bundle.collections:
                reg.register_collection(entry.name, entry.type)
            clock.lap("collections")
            report.new_datasets = _register_datasets(butler, bundle, source is not None)
            clock.lap("datasets")
            by_id = {r.id: r for r in bundle.refs}
            for name, ids in bundle.tagged.items():
                reg.associate(name, [by_id[i] for i in ids])
            for name, entries in bundle.validity.items():
                _certify(butler, name, entries, by_id)
            for entry in bundle.collections:
                if (
                    entry.type is CollectionType.CHAINED
                    and entry.children
                    and reg.get_collection_chain(entry.name) != entry.children
                ):
                    reg.set_collection_chain(entry.name, entry.children)
            clock.lap("tags_calibrations_chains")
    except BaseException:
        placed.undo()
        raise
    clock.lap("commit")
    report.registry_seconds = time.perf_counter() - start - file_time
    report.file_seconds = file_time
    return report


class _Clock:
    """Wall and CPU seconds between calls, recorded by step name."""

    def __init__(self, out: dict[str, float], cpu: dict[str, float]):
        self.out = out
        self.cpu = cpu
        self.last = time.perf_counter()
        self.last_cpu = time.process_time()

    def lap(self, name: str) -> float:
        now, now_cpu = time.perf_counter(), time.process_time()
        self.out[name] = self.out.get(name, 0.0) + now - self.last
        self.cpu[name] = self.cpu.get(name, 0.0) + now_cpu - self.last_cpu
        self.last, self.last_cpu = now, now_cpu
        return self.out[name]


def _place_files(
    butler: Butler, bundle: Bundle, source: FileSource, mode: str, placed: PlacedFiles
) -> None:
    """Place every dataset's file at its datastore path unless a file is already there."""
    store = butler.datastore
    for rec in bundle.files.values():
        target = store.absolute(
            DatastoreRecord(rec.dataset_id, relative_path(rec), rec.formatter, rec.storage_class, 0)
        )
        if not (target.exists() or target.is_symlink()):
            placed.add(source(rec), target, mode)


def _register_datasets(butler: Butler, bundle: Bundle, with_files: bool) -> int:
    """Register the datasets (and their file records) column-wise, one call per RUN."""
    from rc2_platform.registry import DatasetColumns

    reg = butler.registry
    groups: dict[str, dict[tuple[str, bool], list[DatasetRef]]] = {}
    files = bundle.files if with_files else {}
    for ref in bundle.refs:
        key = (ref.dataset_type.name, ref.id in files)
        groups.setdefault(ref.run, {}).setdefault(key, []).append(ref)
    new = 0
    for run, by_type in groups.items():
        batches = []
        for (name, has_files), refs in by_type.items():
            dims = reg.get_dataset_type(name).dimensions
            batch = DatasetColumns(
                name,
                [str(r.id) for r in refs],
                [
                    r.data_id.values_tuple
                    if r.data_id.dimensions == dims
                    else tuple(r.data_id[d] for d in dims)
                    for r in refs
                ],  # fmt: skip
            )
            if has_files:
                recs = [files[r.id] for r in refs]
                batch.paths = [relative_path(f) for f in recs]
                batch.formatters = [f.formatter for f in recs]
                batch.storage_classes = [f.storage_class for f in recs]
                batch.file_sizes = [f.file_size for f in recs]
            batches.append(batch)
        new += reg.import_dataset_columns(run, batches)
    return new


def _certify(
    butler: Butler,
    collection: str,
    entries: list[tuple[uuid.UUID, Timespan]],
    by_id: dict[uuid.UUID, DatasetRef],
) -> None:
    """Certify the validity ranges not already present (so a load is idempotent)."""
    reg = butler.registry
    groups: dict[tuple[str, Timespan], list[DatasetRef]] = {}
    existing: dict[str, set[tuple[uuid.UUID, Timespan]]] = {}
    for rid, span in entries:
        ref = by_id[rid]
        name = ref.dataset_type.name
        if name not in existing:
            existing[name] = set(reg.calibration_validity(collection, name))
        if (rid, span) not in existing[name]:
            groups.setdefault((name, span), []).append(ref)
    for (_, span), refs in groups.items():
        reg.certify(collection, refs, span)
