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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rc2_platform.butler_transfer._records_check import key_filter
from rc2_platform.core import CollectionType, DatasetRef, DatasetType, Timespan
from rc2_platform.core.datastore_record import DatastoreRecord
from rc2_platform.errors import MissingDatasetTypeError

if TYPE_CHECKING:
    from rc2_platform.butler import Butler
    from rc2_platform.registry import DimensionUniverse


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
class Bundle:
    """Everything one export or transfer moves.

    ``refs`` holds every dataset once; ``files`` the datastore record of those that have
    a file; ``tagged`` the dataset ids of each TAGGED collection; ``validity`` the
    (dataset id, validity range) entries of each CALIBRATION collection.
    """

    universe: UniverseTag
    schema_version: str
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dataset_types: list[DatasetType] = field(default_factory=list)
    collections: list[CollectionEntry] = field(default_factory=list)
    refs: list[DatasetRef] = field(default_factory=list)
    files: dict[uuid.UUID, DatastoreRecord] = field(default_factory=dict)
    tagged: dict[str, list[uuid.UUID]] = field(default_factory=dict)
    validity: dict[str, list[tuple[uuid.UUID, Timespan]]] = field(default_factory=dict)
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
            "datasets": len(self.refs),
            "files": len(self.files),
            "tagged": sum(len(v) for v in self.tagged.values()),
            "calibration_ranges": sum(len(v) for v in self.validity.values()),
        }


def collect(
    butler: Butler,
    collections: Sequence[str],
    *,
    where: str = "",
    dataset_types: Sequence[str] = (),
) -> Bundle:
    """Collect the datasets in ``collections`` (and everything they need) from ``butler``.

    Parameters
    ----------
    butler : Butler
        The source repository.
    collections : sequence of str
        Collections to export; CHAINED ones bring their children, datasets bring their
        RUN.
    where : str
        Where-expression restricting the datasets.
    dataset_types : sequence of str
        Glob patterns of dataset types (default: every type).
    """
    from rc2_platform.registry import SCHEMA_VERSION

    reg = butler.registry
    start, cpu0 = time.perf_counter(), time.process_time()
    bundle = Bundle(UniverseTag.of(reg.universe), SCHEMA_VERSION)
    entries = _collection_tree(butler, collections)
    leaves = [e.name for e in entries if e.type is not CollectionType.CHAINED]
    types = _select_types(butler, dataset_types)
    seen: set[uuid.UUID] = set()
    used_types: list[DatasetType] = []
    for dt in types:
        refs = reg.query_datasets(dt, leaves, where, find_first=False) if leaves else []
        fresh = []
        for r in refs:  # a dataset certified twice is found twice
            if r.id not in seen:
                seen.add(r.id)
                fresh.append(r)
        if fresh:
            used_types.append(dt)
            bundle.refs.extend(fresh)
    bundle.dataset_types = used_types
    t_datasets, cpu_datasets = time.perf_counter(), time.process_time()
    names = {e.name for e in entries}
    runs = sorted({r.run for r in bundle.refs} - names)
    entries += [CollectionEntry(run, CollectionType.RUN) for run in runs]
    bundle.collections = entries
    for e in entries:
        if e.type is CollectionType.TAGGED:
            bundle.tagged[e.name] = _tagged_ids(butler, e.name, used_types, where, seen)
        elif e.type is CollectionType.CALIBRATION:
            bundle.validity[e.name] = [
                entry
                for dt in used_types
                if dt.is_calibration
                for entry in reg.calibration_validity(e.name, dt)
                if entry[0] in seen
            ]
    t_members, cpu_members = time.perf_counter(), time.process_time()
    bundle.files = reg.get_datastore_records(bundle.refs)
    t_files, cpu_files = time.perf_counter(), time.process_time()
    bundle.records = _records_for(butler, bundle.refs)
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
    exported: set[uuid.UUID],
) -> list[uuid.UUID]:
    out: list[uuid.UUID] = []
    for dt in types:
        refs = butler.registry.query_datasets(dt, [collection], where, find_first=False)
        out.extend(r.id for r in refs if r.id in exported)
    return out


def _records_for(butler: Butler, refs: Sequence[DatasetRef]) -> dict[str, list[dict[str, Any]]]:
    """The dimension records the data IDs of ``refs`` need (with implied and parent ones).

    Every element whose required dimensions a dataset type has; then, walking the
    dimensions from the most derived, the records their keys and implied values name;
    then elements without a key of their own (``visit_definition``,
    ``visit_detector_region``) between wanted records.
    """
    universe = butler.registry.universe
    wanted: dict[str, set[tuple[Any, ...]]] = {}
    by_dims: dict[tuple[str, ...], set[tuple[Any, ...]]] = {}
    for r in refs:
        by_dims.setdefault(r.data_id.dimensions, set()).add(r.data_id.values_tuple)
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
