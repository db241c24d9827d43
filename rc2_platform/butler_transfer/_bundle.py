"""What an export holds, and how it is collected from a repository.

A :class:`Bundle` is the in-memory form of an export file (and of a transfer between two
open repositories): dimension records, dataset types, collections, datasets with their
datastore records, TAGGED membership and CALIBRATION validity ranges. Collecting one is a
handful of bulk registry queries (one per dataset type and collection), never one per
dataset.
"""

from __future__ import annotations

import fnmatch
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rc2_platform.butler_transfer._records_check import key_filter
from rc2_platform.core import CollectionType, DataCoordinate, DatasetRef, DatasetType
from rc2_platform.core.datastore_record import DatastoreRecord
from rc2_platform.errors import MissingDatasetTypeError

if TYPE_CHECKING:
    from rc2_platform.butler import Butler
    from rc2_platform.registry import DatasetColumnsFound, DimensionUniverse


@dataclass(frozen=True)
class UniverseTag:
    """Which dimension universe a bundle was written for (namespace, version, digest)."""

    namespace: str
    version: int
    digest: str

    @classmethod
    def of(cls, universe: DimensionUniverse) -> UniverseTag:
        """The tag of ``universe``."""
        return cls(universe.config.namespace, universe.config.version, universe.digest)

    def __str__(self) -> str:
        return f"{self.namespace} version {self.version} (digest {self.digest})"


@dataclass
class CollectionEntry:
    """One exported collection; ``children`` only for CHAINED ones."""

    name: str
    type: CollectionType
    children: list[str] = field(default_factory=list)


@dataclass
class DatasetGroup:
    """Datasets of one dataset type in one RUN, column-wise (no object per dataset).

    ``ids`` are UUIDs as 32 lower-case hex digits; ``data_ids`` value tuples in the
    order of ``dataset_type.dimensions``. The file columns hold one entry per dataset
    (None for a dataset without a file), or are None when no dataset of the group has
    one. ``storage_classes`` None: the dataset type's.
    """

    dataset_type: DatasetType
    run: str
    ids: list[str]
    data_ids: list[tuple[Any, ...]]
    paths: list[str | None] | None = None
    formatters: list[str | None] | None = None
    file_sizes: list[int | None] | None = None
    storage_classes: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def n_files(self) -> int:
        """How many datasets of the group have a file."""
        return 0 if self.paths is None else len(self.paths) - self.paths.count(None)

    def describe(self, k: int) -> str:
        """Dataset ``k`` for messages: id, type, data ID and RUN."""
        data_id = dict(zip(self.dataset_type.dimensions, self.data_ids[k], strict=True))
        return f"{uuid.UUID(self.ids[k])} ({self.dataset_type.name} {data_id} in {self.run})"

    def record(self, k: int) -> DatastoreRecord | None:
        """The datastore record of dataset ``k`` (None: no file); for the file steps."""
        if self.paths is None or self.paths[k] is None:
            return None
        assert self.formatters is not None and self.file_sizes is not None
        sc = self.storage_classes[k] if self.storage_classes else None
        return DatastoreRecord(
            uuid.UUID(self.ids[k]),
            self.paths[k] or "",
            self.formatters[k] or "",
            sc or self.dataset_type.storage_class,
            self.file_sizes[k] or 0,
        )


@dataclass
class Bundle:
    """Everything one export or transfer moves.

    ``groups`` holds every dataset once (column-wise, per dataset type and RUN, with
    the datastore records of their files); ``tagged`` the dataset ids (hex) of each
    TAGGED collection; ``validity`` the (dataset id, begin, end) entries of each
    CALIBRATION collection (TAI ns, half-open).
    """

    universe: UniverseTag
    schema_version: str
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dataset_types: list[DatasetType] = field(default_factory=list)
    collections: list[CollectionEntry] = field(default_factory=list)
    groups: list[DatasetGroup] = field(default_factory=list)
    tagged: dict[str, list[str]] = field(default_factory=dict)
    validity: dict[str, list[tuple[str, int, int]]] = field(default_factory=dict)
    #: Seconds spent in registry calls while collecting, in total and per step.
    registry_seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    #: CPU seconds of this process per step.
    cpu_phases: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """How many of each kind of item the bundle holds."""
        return {
            "dimension_records": sum(len(v) for v in self.records.values()),
            "dataset_types": len(self.dataset_types),
            "collections": len(self.collections),
            "datasets": sum(len(g) for g in self.groups),
            "files": sum(g.n_files() for g in self.groups),
            "tagged": sum(len(v) for v in self.tagged.values()),
            "calibration_ranges": sum(len(v) for v in self.validity.values()),
        }

    def file_records(self) -> Iterator[tuple[DatasetGroup, int, DatastoreRecord]]:
        """(group, index, datastore record) of every dataset that has a file."""
        for g in self.groups:
            if g.paths is None:
                continue
            for k in range(len(g)):
                rec = g.record(k)
                if rec is not None:
                    yield g, k, rec

    def refs_of(self, ids: Iterable[str]) -> dict[str, DatasetRef]:
        """Refs of the datasets ``ids`` (hex), for the few calls that take refs (tagging,
        certifying); built only for those."""
        wanted = set(ids)
        out: dict[str, DatasetRef] = {}
        if not wanted:
            return out
        for g in self.groups:
            dt, dims = g.dataset_type, g.dataset_type.dimensions
            for k, i in enumerate(g.ids):
                if i in wanted:
                    out[i] = DatasetRef(
                        dt, DataCoordinate(dims, g.data_ids[k]), g.run, uuid.UUID(i)
                    )
        return out


#: Datasets whose datastore records are read at once (ids per query).
_RECORD_READ = 50_000


def collect(
    butler: Butler,
    collections: Sequence[str],
    *,
    where: str = "",
    dataset_types: Sequence[str] = (),
) -> Bundle:
    """Collect the datasets in ``collections`` (and everything they need) from ``butler``.

    Column-wise: one dataset query per dataset type (ids as hex, data IDs as tuples),
    one datastore-record read per 50,000 datasets; no ref object per dataset.

    Parameters
    ----------
    butler : Butler
        The source repository.
    collections : sequence of str
        Collections to export; CHAINED ones bring their children, datasets bring their
        RUN.
    where : str
        Where-expression restricting the datasets. It may constrain only dimensions
        every type matched by ``dataset_types`` has (required or implied) and their
        records' columns; without ``dataset_types``, every type any of whose datasets
        it selects.
    dataset_types : sequence of str
        Glob patterns of dataset types (default: every type).

    Raises
    ------
    ExpressionError
        ``where`` constrains a dimension a type lacks (it would join that dimension
        instead of selecting data IDs, taking every dataset of the type); raised before
        anything is written.
    """
    from rc2_platform.registry import SCHEMA_VERSION

    reg = butler.registry
    start, cpu0 = time.perf_counter(), time.process_time()
    bundle = Bundle(UniverseTag.of(reg.universe), SCHEMA_VERSION)
    entries = _collection_tree(butler, collections)
    leaves = [e.name for e in entries if e.type is not CollectionType.CHAINED]
    types = _select_types(butler, dataset_types)
    if dataset_types:
        reg.check_where_dimensions(where, types)
    seen: set[str] = set()
    used_types: list[DatasetType] = []
    for dt in types:
        if not leaves:
            break
        groups = _groups(reg.query_dataset_columns(dt, leaves, where, find_first=False), seen)
        if groups and not dataset_types:
            reg.check_where_dimensions(where, [dt])
        if groups:
            used_types.append(dt)
            bundle.groups.extend(groups)
    bundle.dataset_types = used_types
    t_datasets, cpu_datasets = time.perf_counter(), time.process_time()
    names = {e.name for e in entries}
    runs = sorted({g.run for g in bundle.groups} - names)
    entries += [CollectionEntry(run, CollectionType.RUN) for run in runs]
    bundle.collections = entries
    for e in entries:
        if e.type is CollectionType.TAGGED:
            bundle.tagged[e.name] = _tagged_ids(butler, e.name, used_types, where, seen)
        elif e.type is CollectionType.CALIBRATION:
            bundle.validity[e.name] = [
                (rid.hex, span.begin_nsec, span.end_nsec)
                for dt in used_types
                if dt.is_calibration
                for rid, span in reg.calibration_validity(e.name, dt)
                if rid.hex in seen
            ]
    t_members, cpu_members = time.perf_counter(), time.process_time()
    _add_files(butler, bundle.groups)
    t_files, cpu_files = time.perf_counter(), time.process_time()
    bundle.records = _records_for(butler, bundle.groups)
    end, cpu_end = time.perf_counter(), time.process_time()
    bundle.registry_seconds = end - start
    bundle.phases = {
        "datasets": t_datasets - start,
        "tags_calibrations": t_members - t_datasets,
        "datastore_records": t_files - t_members,
        "dimension_records": end - t_files,
    }
    bundle.cpu_phases = {
        "datasets": cpu_datasets - cpu0,
        "tags_calibrations": cpu_members - cpu_datasets,
        "datastore_records": cpu_files - cpu_members,
        "dimension_records": cpu_end - cpu_files,
    }
    return bundle


def _groups(found: DatasetColumnsFound, seen: set[str]) -> list[DatasetGroup]:
    """A search's columns as one group per RUN, without datasets already in ``seen``
    (a dataset certified twice is found twice)."""
    ids = [found.ids[i : i + 32] for i in range(0, len(found.ids), 32)]
    by_run: dict[int, DatasetGroup] = {}
    dt = found.dataset_type
    for i, run, key in zip(ids, found.run, found.keys, strict=True):
        if i in seen:
            continue
        seen.add(i)
        group = by_run.get(run)
        if group is None:
            group = by_run[run] = DatasetGroup(dt, found.runs[run], [], [])
        group.ids.append(i)
        group.data_ids.append(tuple(key))
    return list(by_run.values())


def _add_files(butler: Butler, groups: Sequence[DatasetGroup]) -> None:
    """Fill the file columns of ``groups`` from the datastore records (bulk reads)."""
    todo = [(g, i) for g in groups for i in g.ids]
    found: dict[str, tuple[Any, ...]] = {}
    for k in range(0, len(todo), _RECORD_READ):
        part = [i for _, i in todo[k : k + _RECORD_READ]]
        found.update(butler.registry.query_datastore_record_columns(part))
    if not found:
        return
    for g in groups:
        rows = [found.get(i) for i in g.ids]
        if not any(r is not None for r in rows):
            continue
        g.paths = [None if r is None else r[0] for r in rows]
        g.formatters = [None if r is None else r[1] for r in rows]
        g.storage_classes = [None if r is None else r[2] for r in rows]
        g.file_sizes = [None if r is None else (r[3] or 0) for r in rows]


def _collection_tree(butler: Butler, names: Iterable[str]) -> list[CollectionEntry]:
    """The named collections and, for chains, every descendant (each once, parents first)."""
    reg = butler.registry
    out: list[CollectionEntry] = []
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        ctype = reg.get_collection_type(name)
        entry = CollectionEntry(name, ctype)
        if ctype is CollectionType.CHAINED:
            entry.children = reg.get_collection_chain(name)
            todo.extend(entry.children)
        out.append(entry)
    return out


def _select_types(butler: Butler, patterns: Sequence[str]) -> list[DatasetType]:
    types = butler.registry.query_dataset_types()
    if not patterns:
        return types
    chosen = [t for t in types if any(fnmatch.fnmatchcase(t.name, p) for p in patterns)]
    for p in patterns:
        if not any(fnmatch.fnmatchcase(t.name, p) for t in types):
            raise MissingDatasetTypeError(
                f"--dataset-types {p!r} matches no registered dataset type; "
                "list them with `rc2 dataset-types REPO`"
            )
    return chosen


def _tagged_ids(
    butler: Butler,
    collection: str,
    types: Sequence[DatasetType],
    where: str,
    exported: set[str],
) -> list[str]:
    out: list[str] = []
    for dt in types:
        found = butler.registry.query_dataset_columns(dt, [collection], where, find_first=False)
        ids = found.ids
        out.extend(i for i in (ids[k : k + 32] for k in range(0, len(ids), 32)) if i in exported)
    return out


def _records_for(butler: Butler, groups: Sequence[DatasetGroup]) -> dict[str, list[dict[str, Any]]]:
    """The dimension records the data IDs of ``groups`` need (with implied and parent ones).

    Every element whose required dimensions a dataset type has; then, walking the
    dimensions from the most derived, the records their keys and implied values name;
    then elements without a key of their own (``visit_definition``,
    ``visit_detector_region``) between wanted records.
    """
    universe = butler.registry.universe
    wanted: dict[str, set[tuple[Any, ...]]] = {}
    by_dims: dict[tuple[str, ...], set[tuple[Any, ...]]] = {}
    for g in groups:
        by_dims.setdefault(g.dataset_type.dimensions, set()).update(g.data_ids)
    tabled = [el for el in universe.elements if el.has_table]
    for dims, rows in by_dims.items():
        pos = {d: i for i, d in enumerate(dims)}
        for el in tabled:
            if set(el.required) <= pos.keys():
                idx = [pos[d] for d in el.required]
                wanted.setdefault(el.name, set()).update(tuple(row[i] for i in idx) for row in rows)
    fetched: dict[str, list[dict[str, Any]]] = {}
    dimensions = [el for el in tabled if el.key is not None]
    for el in reversed(dimensions):
        _fetch(butler, el.name, wanted, fetched)
    for el in tabled:
        if el.key is None and all(d in wanted for d in el.required if universe[d].has_table):
            own = {d: {k[-1] for k in wanted[d]} for d in el.required if universe[d].has_table}
            where = " AND ".join(
                f for f in (key_filter((d,), {(v,) for v in vals}) for d, vals in own.items()) if f
            )
            records = butler.registry.query_dimension_records(el.name, where)
            keep = [
                rec
                for rec in records
                if all(
                    tuple(rec[c] for c in universe[d].required) in wanted[d]
                    for d in el.required
                    if universe[d].has_table
                )
            ]
            if keep:
                fetched[el.name] = keep
    return {el.name: fetched[el.name] for el in tabled if fetched.get(el.name)}


def _fetch(
    butler: Butler,
    element: str,
    wanted: dict[str, set[tuple[Any, ...]]],
    fetched: dict[str, list[dict[str, Any]]],
) -> None:
    """Fetch the wanted records of a dimension; note the parents and implied ones they name."""
    universe = butler.registry.universe
    keys = wanted.get(element)
    if not keys:
        return
    el = universe[element]
    records = [
        rec
        for rec in butler.registry.query_dimension_records(element, key_filter(el.required, keys))
        if tuple(rec[c] for c in el.required) in keys
    ]
    fetched[element] = records
    for dep in [*el.required, *el.implied]:
        target = universe[dep]
        if dep == element or not target.has_table:
            continue
        wanted.setdefault(dep, set()).update(
            tuple(rec[c] for c in target.required)
            for rec in records
            if all(rec.get(c) is not None for c in target.required)
        )
