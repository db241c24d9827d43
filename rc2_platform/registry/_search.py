"""Dataset search: find-first over collection search paths, single lookups, calibrations.

The hot read paths of the registry. :class:`DatasetSearch` turns a dataset type, a
search path (collections, chains flattened) and optional data IDs / where-expression
into refs, with one SQL statement per search (or one plain indexed query per RUN of a
short chain of RUNs, merged in Python).
"""

from __future__ import annotations

import itertools
import operator
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import CollectionType, DatasetRef, DatasetType
from rc2_platform.core.timespan import Timespan
from rc2_platform.registry._bulk import no_gc, select_raw, uuid_from_hex
from rc2_platform.registry._calibrations import membership_rows
from rc2_platform.registry._collections import CollectionManager, CollectionRecord
from rc2_platform.registry._connections import Connections
from rc2_platform.registry._data_ids import data_ids
from rc2_platform.registry._datasets import DatasetManager, StoredDatasetType
from rc2_platform.registry._dialect import backend
from rc2_platform.registry._lookup import CompiledLookup, fetch_one_in
from rc2_platform.registry._queries import QueryBuilder
from rc2_platform.registry.expressions import parse_where

#: Find-first over a chain of at most this many RUNs runs one query per run.
MAX_PER_RUN_QUERIES = 20

CollectionArg = str | Sequence[str]


@dataclass
class DatasetColumnsFound:
    """A dataset search's result as columns (what the butler server sends).

    Attributes
    ----------
    dataset_type : DatasetType
        The type searched.
    runs : list of str
        The distinct RUN names found, in first-seen order.
    run : list of int
        Per dataset, its RUN's index in ``runs``.
    ids : str
        The dataset ids, 32 lowercase hex digits each, concatenated.
    keys : list of tuple
        Per dataset, its data ID values in the type's dimension order.
    """

    dataset_type: DatasetType
    runs: list[str]
    run: list[int]
    ids: str
    keys: list[tuple[Any, ...]]


class DatasetSearch:
    """Searches for datasets in collections (the read side of the registry).

    Parameters
    ----------
    db : Connections
        The registry's connections (reads share the current transaction).
    collections : CollectionManager
        Collection records and chains.
    datasets : DatasetManager
        Dataset types and their membership tables.
    queries : QueryBuilder
        Joins and where-expressions.
    """

    def __init__(
        self,
        db: Connections,
        collections: CollectionManager,
        datasets: DatasetManager,
        queries: QueryBuilder,
    ):
        self.db = db
        self.collections = collections
        self.datasets = datasets
        self.queries = queries
        self.universe = queries.universe
        self._run_names: dict[int, str] = {}
        self._lookup_generation = -1
        self._lookup_cache: dict[
            tuple[Any, ...], tuple[CompiledLookup | None, StoredDatasetType]
        ] = {}

    def clear_cache(self) -> None:
        """Forget compiled lookups and run names (collections or chains changed)."""
        self._lookup_cache.clear()
        self._run_names.clear()

    def search_path(
        self, conn: sa.Connection, stored: StoredDatasetType, collections: CollectionArg
    ) -> list[CollectionRecord]:
        """The flattened collections that may hold datasets of ``stored``, in search order."""
        flat = self.collections.flatten(conn, collections)
        present = self.datasets.collections_with(conn, stored.id, [c.id for c in flat])
        return [c for c in flat if c.id in present]

    # --- many data IDs ------------------------------------------------------------------

    def search(
        self,
        dataset_type: str | DatasetType,
        collections: CollectionArg,
        data_ids_: Iterable[Mapping[str, Any]] | None,
        where: str,
        bind: Mapping[str, Any] | None,
        timespan: Timespan | None,
        find_first: bool,
    ) -> list[DatasetRef]:
        """Refs of ``dataset_type`` in ``collections`` (first found per data ID if asked)."""
        # Fetching and wrapping ~100k rows must not trigger full GC passes over the heap.
        with self.db.read() as conn, no_gc():
            found = self._found_rows(
                conn, dataset_type, collections, data_ids_, where, bind, timespan, find_first
            )
            if found is None:
                return []
            stored, rows, wanted, keys = found
            return self._rows_to_refs(conn, stored, rows, wanted, keys)

    def search_columns(
        self,
        dataset_type: str | DatasetType,
        collections: CollectionArg,
        where: str,
        bind: Mapping[str, Any] | None,
        find_first: bool,
    ) -> DatasetColumnsFound:
        """The same search as :meth:`search`, as columns (no ref object per dataset)."""
        with self.db.read() as conn, no_gc():
            found = self._found_rows(
                conn, dataset_type, collections, None, where, bind, None, find_first
            )
            stored = found[0] if found else self.datasets.get(conn, dataset_type)
            dt = stored.dataset_type
            n = len(dt.dimensions)
            if found is None or not found[1]:
                return DatasetColumnsFound(dt, [], [], "", [])
            _, rows, _, keys = found
            if keys is None:
                keys = list(map(operator.itemgetter(slice(0, n)), rows))
            run_ids = list(map(operator.itemgetter(n + 1), rows))
            order = {r: i for i, r in enumerate(dict.fromkeys(run_ids))}
            runs = [self.collections.by_id(conn, r).name for r in order]
            ids: Iterable[Any] = map(operator.itemgetter(n), rows)
            if backend(conn).native_uuid:
                first = rows[0][n]
                as_uuid = (
                    (lambda v: v) if isinstance(first, uuid.UUID) else backend(conn).uuid_from_db()
                )
                hex_ids = "".join(map(operator.attrgetter("hex"), map(as_uuid, ids)))
            else:
                hex_ids = "".join(ids).replace("-", "").lower()
            return DatasetColumnsFound(
                dt, runs, list(map(order.__getitem__, run_ids)), hex_ids, keys
            )

    def _found_rows(
        self,
        conn: sa.Connection,
        dataset_type: str | DatasetType,
        collections: CollectionArg,
        data_ids_: Iterable[Mapping[str, Any]] | None,
        where: str,
        bind: Mapping[str, Any] | None,
        timespan: Timespan | None,
        find_first: bool,
    ) -> tuple[StoredDatasetType, Any, set[tuple[Any, ...]] | None, list[Any] | None] | None:
        """(stored type, raw rows, wanted data IDs, row keys) of a search; None if empty."""
        if where:
            parse_where(where)  # a malformed expression is an error even with nothing to search
        stored = self.datasets.get(conn, dataset_type)
        dims = stored.dataset_type.dimensions
        wanted = (
            None
            if data_ids_ is None
            else {d.values_tuple for d in data_ids(self.universe, dims, data_ids_)}
        )
        path = self.search_path(conn, stored, collections)
        if not path or wanted == set():
            return None
        # A short chain of RUNs: one plain indexed query per run, merged in Python so
        # the earlier run wins, instead of a window function over every row in SQL.
        per_run = find_first and 1 < len(path) <= MAX_PER_RUN_QUERIES and _all_runs(path)
        rows: Any = []
        for part in [[c] for c in reversed(path)] if per_run else [path]:
            stmt = self._statement(stored, part, find_first, timespan, wanted, where, bind)
            if stmt is None:
                continue
            found = select_raw(conn, stmt)
            if per_run:
                rows.append(found)
            else:
                rows = found
        keys = None
        if per_run:
            keys, rows = _merge_runs(rows, len(dims))
        return stored, rows, wanted, keys

    def _statement(
        self,
        stored: StoredDatasetType,
        path: Sequence[CollectionRecord],
        find_first: bool,
        timespan: Timespan | None,
        wanted: set[tuple[Any, ...]] | None,
        where: str,
        bind: Mapping[str, Any] | None,
    ) -> sa.Select[Any] | None:
        """SELECT dims..., dataset_id, run_id for ``path``, constrained by ``where``."""
        stmt = self.queries.dataset_rows(
            stored,
            path,
            find_first=find_first,
            timespan=timespan,
            keys=None if wanted is None else list(wanted),
        )
        expr = self.queries.parse(where)
        if stmt is None or expr is None:
            return stmt
        wdims, elements = self.queries.referenced(expr)
        sub = stmt.subquery("found")
        dims = stored.dataset_type.dimensions
        plan = self.queries.plan(set(dims) | wdims, elements, [sub])
        stmt = (
            sa.select(*sub.c)
            .select_from(plan.from_)
            .where(*self.queries.where_clause(plan, expr, bind))
        )
        # A dimension the type lacks (visit IN (1, 2) for a bias) joins several rows to
        # one dataset: each is selected once.
        foreign = wdims - set(self.queries.universe.expand(dims))
        return stmt.distinct() if foreign else stmt

    def _rows_to_refs(
        self,
        conn: sa.Connection,
        stored: StoredDatasetType,
        rows: Sequence[Sequence[Any]],
        wanted: set[tuple[Any, ...]] | None,
        keys: list[Any] | None = None,
    ) -> list[DatasetRef]:
        """Refs from raw ``(dims..., dataset_id, run_id)`` rows (the read-back hot path).

        ``keys`` are the rows' data ID tuples when the caller has them already. Built
        with ``map`` over columns so the per-row work stays in C where it can.
        """
        dt = stored.dataset_type
        dims = dt.dimensions
        n = len(dims)
        if keys is None:
            keys = list(map(operator.itemgetter(slice(0, n)), rows))
        if wanted is not None:
            keep = [k in wanted for k in keys]
            rows = list(itertools.compress(rows, keep))
            keys = list(itertools.compress(keys, keep))
        if not rows:
            return []
        run_ids = list(map(operator.itemgetter(n + 1), rows))
        names = {r: self.collections.by_id(conn, r).name for r in set(run_ids)}
        ids: Iterable[Any] = map(operator.itemgetter(n), rows)
        be = backend(conn)
        if not be.native_uuid:
            ids = map(uuid_from_hex, ids)
        elif not isinstance(rows[0][n], uuid.UUID):
            ids = map(be.uuid_from_db(), ids)
        coords = DataCoordinate.from_value_rows(dims, keys)
        return list(
            map(DatasetRef, itertools.repeat(dt), coords, map(names.__getitem__, run_ids), ids)
        )

    # --- one data ID --------------------------------------------------------------------

    def find_dataset(
        self,
        dataset_type: str | DatasetType,
        data_id: Mapping[str, Any],
        collections: CollectionArg,
        timespan: Timespan | None = None,
    ) -> DatasetRef | None:
        """Find-first lookup of one data ID (None if not found).

        The statement is compiled once per (dataset type, collections, timespan) and run
        on a kept driver connection (see ``rc2_platform/registry/_lookup.py``).
        """
        coll_key = (collections,) if isinstance(collections, str) else tuple(collections)
        key = (
            dataset_type if isinstance(dataset_type, str) else dataset_type.name,
            coll_key,
            timespan,
        )
        if self._lookup_generation != self.datasets.summary_generation:
            # A collection received a new dataset type: cached search paths may miss it.
            self._lookup_cache.clear()
            self._lookup_generation = self.datasets.summary_generation
        cached = self._lookup_cache.get(key)
        if cached is None:
            cached = self._lookup_cache[key] = self._compile_lookup(
                dataset_type, collections, timespan
            )
        compiled, stored = cached
        dims = stored.dataset_type.dimensions
        coord = (
            data_id
            if isinstance(data_id, DataCoordinate) and data_id.dimensions == dims
            else data_ids(self.universe, dims, [data_id])[0]
        )
        if compiled is None:
            return None
        args = compiled.args(coord.values_tuple)
        current = self.db.current
        if current is not None:
            row = fetch_one_in(current, compiled.sql, args)
        else:
            row = self.db.lookups.fetch_one(compiled.sql, args)
        if row is None:
            return None
        n = len(dims)
        run = self._run_names.get(row[n + 1])
        if run is None:
            with self.db.read() as conn:
                run = self._run_names[row[n + 1]] = self.collections.by_id(conn, row[n + 1]).name
        dataset_id = row[n]
        if not isinstance(dataset_id, uuid.UUID):
            dataset_id = uuid_from_hex(dataset_id)
        return DatasetRef(stored.dataset_type, coord, run, dataset_id)

    def _compile_lookup(
        self,
        dataset_type: str | DatasetType,
        collections: CollectionArg,
        timespan: Timespan | None,
    ) -> tuple[CompiledLookup | None, StoredDatasetType]:
        with self.db.read() as conn:
            stored = self.datasets.get(conn, dataset_type)
            path = self.search_path(conn, stored, collections)
            stmt = self.queries.dataset_rows(stored, path, timespan=timespan, key_params=True)
            dims = stored.dataset_type.dimensions
            compiled = None if stmt is None else CompiledLookup.build(stmt, dims, conn.dialect)
        return compiled, stored

    # --- calibrations -------------------------------------------------------------------

    def find_calibrations(
        self,
        dataset_type: str | DatasetType,
        collections: CollectionArg,
        data_ids_and_times: Sequence[tuple[Mapping[str, Any], Timespan]],
    ) -> dict[tuple[DataCoordinate, Timespan], DatasetRef]:
        """Resolve many (data ID, time) pairs against a search path in one query.

        See :meth:`rc2_platform.registry.Registry.find_calibrations`.
        """
        with self.db.read() as conn:
            stored = self.datasets.get(conn, dataset_type)
            dims = stored.dataset_type.dimensions
            items = [(self.universe.data_id(d, dims), t) for d, t in data_ids_and_times]
            path = self.search_path(conn, stored, collections)
            if not items or not path:
                return {}
            keys = list({d.values_tuple for d, _ in items})
            rows = membership_rows(conn, self.datasets.schema, stored, path, keys)
            ranks = {rec.id: i for i, rec in enumerate(path)}
            candidates: dict[tuple[Any, ...], list[tuple[tuple[int, int], dict[str, Any]]]] = {}
            for row in rows:
                order = (ranks[row["collection_id"]], -(row["valid_begin"] or 0))
                candidates.setdefault(tuple(row[d] for d in dims), []).append((order, row))
            for lst in candidates.values():
                lst.sort(key=lambda x: x[0])
            out: dict[tuple[DataCoordinate, Timespan], DatasetRef] = {}
            for coord, ts in items:
                for _, row in candidates.get(coord.values_tuple, []):
                    b, e = row["valid_begin"], row["valid_end"]
                    if b is None or (b < ts.end_nsec and ts.begin_nsec < e):
                        run = self.collections.by_id(conn, row["run_id"]).name
                        out[(coord, ts)] = DatasetRef(
                            stored.dataset_type, coord, run, row["dataset_id"]
                        )
                        break
            return out


def _all_runs(path: Sequence[CollectionRecord]) -> bool:
    return all(c.type == CollectionType.RUN for c in path)


def _merge_runs(
    results: Sequence[Sequence[Sequence[Any]]], n: int
) -> tuple[list[Any], list[Sequence[Any]]]:
    """Merge per-run results given last run first: a later result (earlier run) wins.

    Rows are ``(dims..., dataset_id, run_id)``; the data ID is the first ``n`` columns.
    Returns the data ID tuples and their rows.
    """
    key_of = operator.itemgetter(slice(0, n))
    best: dict[Any, Sequence[Any]] = {}
    for rows in results:
        best.update(zip(map(key_of, rows), rows, strict=True))
    return list(best), list(best.values())
