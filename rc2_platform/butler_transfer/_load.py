"""Load a bundle into a repository: checks first, then one transaction.

Everything that can be refused is checked before anything is written: dataset types
defined otherwise in the destination, collections of another type, chains with other
children, existing dimension records with other values (unless told to keep the
destination's: ``skip_differing_records``), files missing from the source or of another
size than recorded (truncated), files outside the export's folder or the source
datastore unless allowed (``_sources``). Then the files are placed (at their source
datastore paths; one already there is kept) and, inside one butler transaction, the
rows: dataset types, dimension records, collections, datasets with their datastore
records (column-wise, :meth:`Registry.import_dataset_columns`; identical existing ones
are skipped, so a load is idempotent), TAGGED membership, validity ranges, chains. If
anything fails the rows roll back and the placed files are removed.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rc2_platform.butler_transfer._bundle import Bundle, DatasetGroup
from rc2_platform.butler_transfer._files import PlacedFiles, check_mode, relative_path
from rc2_platform.butler_transfer._records_check import RecordDifference, check_records
from rc2_platform.butler_transfer._sources import FileSource
from rc2_platform.core import CollectionType, DatasetRef, Timespan
from rc2_platform.core.datastore_record import DatastoreRecord
from rc2_platform.errors import (
    CollectionTypeError,
    ConflictingDefinitionError,
    DatastoreError,
    FileNotInDatastoreError,
    MissingCollectionError,
    MissingDatasetTypeError,
    OutsideFilesError,
)

if TYPE_CHECKING:
    from rc2_platform.butler import Butler


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
    #: Existing dimension records kept although the load's differ
    #: (``skip_differing_records``), each as one line.
    kept_records: list[str] = field(default_factory=list)


def check(
    butler: Butler,
    bundle: Bundle,
    source: FileSource | None,
    *,
    skip_differing_records: bool = False,
) -> tuple[dict[str, list[Mapping[str, Any]]], list[RecordDifference]]:
    """Refuse the load, before writing anything, if the destination disagrees with it.

    Returns the dimension records the destination lacks, by element, and the existing
    records that differ from the load's (kept; only with ``skip_differing_records``,
    else they are refused).
    """
    reg = butler.registry
    for dt in bundle.dataset_types:
        butler.datastore.formatter_for(dt.storage_class)  # a storage class it cannot write
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
    missing, differing = check_records(
        butler, bundle.records, skip_differing=skip_differing_records
    )
    if source is not None:
        for g, k, rec in bundle.file_records():
            if (why := source.refusal(rec)) is not None:
                raise OutsideFilesError(f"{source.origin}: dataset {g.describe(k)} {why}")
            _target(butler, rec)  # refuses a path leading out of the destination's root
            if not (path := source(rec)).is_file():
                raise FileNotInDatastoreError(
                    f"dataset {g.describe(k)} has no file at {path}; nothing was written"
                )
            if rec.file_size and (size := path.stat().st_size) != rec.file_size:
                raise DatastoreError(
                    f"dataset {g.describe(k)}: its file {path} has {size:,} bytes, but "
                    f"{rec.file_size:,} were recorded: truncated or changed since it was "
                    "written; copy it again (nothing was written)"
                )
    return missing, differing


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
    skip_differing_records: bool = False,
) -> LoadReport:
    """Write ``bundle`` into ``butler`` (see the module docstring).

    Parameters
    ----------
    butler : Butler
        The destination repository.
    bundle : Bundle
        What to write (already checked for universe and schema version).
    source : FileSource, optional
        Where the file of a datastore record is, and which files may be read (one
        outside the export's folder or the source datastore is refused before anything
        is written); None: datasets without files.
    transfer : str
        ``copy``, ``link`` (hard link, else copy), ``symlink`` or ``hardlink``.
    dry_run : bool
        Check only.
    skip_differing_records : bool
        Keep a destination record whose values differ from the bundle's (listed in
        ``LoadReport.kept_records``) instead of refusing the load.
    """
    check_mode(transfer)
    report = LoadReport(counts=bundle.counts(), dry_run=dry_run)
    missing, differing = check(
        butler, bundle, source, skip_differing_records=skip_differing_records
    )
    report.kept_records = [d.describe() for d in differing]
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
            for element, rows in missing.items():  # the records the check did not find
                reg.insert_dimension_records(element, rows, skip_existing=True)
            clock.lap("dimension_records")
            for entry in bundle.collections:
                reg.register_collection(entry.name, entry.type)
            clock.lap("collections")
            report.new_datasets = _register_datasets(butler, bundle, source is not None)
            clock.lap("datasets")
            by_id = bundle.refs_of(
                [*(i for v in bundle.tagged.values() for i in v),
                 *(e[0] for v in bundle.validity.values() for e in v)]
            )  # fmt: skip
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
    for _, _, rec in bundle.file_records():
        target = _target(butler, rec)
        if not os.path.lexists(target):  # a file (or a symlink, even dangling) is kept
            placed.add(source(rec), target, mode)


def _target(butler: Butler, rec: DatastoreRecord) -> Path:
    """Where ``rec``'s file goes in ``butler``'s datastore (PathTraversalError if out)."""
    return butler.datastore.absolute(
        DatastoreRecord(rec.dataset_id, relative_path(rec), rec.formatter, "", 0)
    )


def _register_datasets(butler: Butler, bundle: Bundle, with_files: bool) -> int:
    """Register the datasets (and their file records) column-wise, one call per RUN.

    The groups' columns go to :meth:`Registry.import_dataset_columns` as they are: no
    ref, data ID or UUID object per dataset.
    """
    from rc2_platform.registry import DatasetColumns

    reg = butler.registry
    by_run: dict[str, list[DatasetColumns]] = {}
    for g in bundle.groups:
        by_run.setdefault(g.run, []).extend(_columns(g, with_files, DatasetColumns))
    return sum(reg.import_dataset_columns(run, batches) for run, batches in by_run.items())


def _columns(g: DatasetGroup, with_files: bool, factory: Any) -> list[Any]:
    """``DatasetColumns`` of a group: one batch, or two when only some datasets have files."""
    name = g.dataset_type.name
    if not with_files or g.paths is None:
        return [factory(name, g.ids, g.data_ids)]
    paths = g.paths
    if None in paths:  # datasets with and without files in one group: split it
        has = [k for k, p in enumerate(paths) if p is not None]
        hasnt = [k for k, p in enumerate(paths) if p is None]
        sub = DatasetGroup(
            g.dataset_type,
            g.run,
            [g.ids[k] for k in has],
            [g.data_ids[k] for k in has],
            [paths[k] for k in has],
            [g.formatters[k] for k in has] if g.formatters else None,
            [g.file_sizes[k] for k in has] if g.file_sizes else None,
            [g.storage_classes[k] for k in has] if g.storage_classes else None,
        )
        rest = factory(name, [g.ids[k] for k in hasnt], [g.data_ids[k] for k in hasnt])
        return [*_columns(sub, with_files, factory), rest]
    batch = factory(name, g.ids, g.data_ids)
    given = cast(list[str], paths)
    if ("\0" + "\0".join(given)).find("\0/") >= 0:  # absolute: ingested in place ("direct")
        given = [
            relative_path(DatastoreRecord(uuid.UUID(i), p, "", "", 0)) if os.path.isabs(p) else p
            for i, p in zip(g.ids, given, strict=True)
        ]
    batch.paths = given
    batch.formatters = g.formatters
    sc = g.dataset_type.storage_class
    batch.storage_classes = (
        [c or sc for c in g.storage_classes] if g.storage_classes else [sc] * len(g)
    )
    batch.file_sizes = g.file_sizes
    return [batch]


def _certify(
    butler: Butler,
    collection: str,
    entries: list[tuple[str, int, int]],
    by_id: dict[str, DatasetRef],
) -> None:
    """Certify the validity ranges not already present (so a load is idempotent)."""
    reg = butler.registry
    groups: dict[tuple[str, int, int], list[DatasetRef]] = {}
    existing: dict[str, set[tuple[str, int, int]]] = {}
    for rid, begin, end in entries:
        ref = by_id[rid]
        name = ref.dataset_type.name
        if name not in existing:
            existing[name] = {
                (i.hex, span.begin_nsec, span.end_nsec)
                for i, span in reg.calibration_validity(collection, name)
            }
        if (rid, begin, end) not in existing[name]:
            groups.setdefault((name, begin, end), []).append(ref)
    for (_, begin, end), refs in groups.items():
        reg.certify(collection, refs, Timespan(begin, end))
