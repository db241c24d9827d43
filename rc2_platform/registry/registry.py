"""The registry: what exists, with which data ID, in which collection (SQLAlchemy Core)."""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from rc2_platform.errors import (
    CollectionTypeError,
    DatasetNotFoundError,
    DimensionError,
    SchemaVersionError,
)
from rc2_platform.registry._bulk import random_uuids, select_raw, uuid_from_db
from rc2_platform.registry._collections import CollectionManager, CollectionRecord
from rc2_platform.registry._datasets import DatasetManager, StoredDatasetType
from rc2_platform.registry._engine import WRITE_TRANSACTION, make_engine, safe_url
from rc2_platform.registry._queries import QueryBuilder
from rc2_platform.registry._records import RecordManager
from rc2_platform.registry.data_id import DataCoordinate
from rc2_platform.registry.dataset_types import (
    CollectionType,
    DatasetIdGenMode,
    DatasetRef,
    DatasetType,
    make_dataset_id,
)
from rc2_platform.registry.dimensions import DimensionUniverse
from rc2_platform.registry.schema import SCHEMA_VERSION, RegistrySchema
from rc2_platform.registry.timespan import Timespan

_log = logging.getLogger(__name__)

#: Inserts of at least this many rows refresh planner statistics afterwards.
ANALYZE_THRESHOLD = 10_000

CollectionArg = str | Sequence[str]


class Registry:
    """A registry database. Build with :meth:`create` or :meth:`open`.

    Every public method runs in its own transaction unless called inside
    :meth:`transaction`, in which case all work shares that one transaction.
    """

    def __init__(self, engine: sa.Engine, universe: DimensionUniverse):
        self.engine = engine
        self.universe = universe
        self.schema = RegistrySchema(universe)
        self.records = RecordManager(self.schema)
        self.collections = CollectionManager(self.schema)
        self.datasets = DatasetManager(self.schema)
        self.queries = QueryBuilder(self.schema)
        self._conn: sa.Connection | None = None
        self._local = threading.local()
        self._lookup_cache: dict[
            tuple[Any, ...], tuple[sa.Select[Any] | None, StoredDatasetType]
        ] = {}

    # --- lifecycle --------------------------------------------------------------------

    @classmethod
    def create(cls, url: str | sa.URL, universe: DimensionUniverse | None = None) -> Registry:
        """Create the schema in an empty database and return the registry.

        Server URLs may omit the password; it is then read from ``RC2_DB_PASSWORD``.
        """
        universe = universe or DimensionUniverse.default()
        engine = make_engine(url)
        reg = cls(engine, universe)
        with engine.begin() as conn:
            if sa.inspect(conn).has_table("rc2_meta"):
                raise SchemaVersionError(
                    f"a registry already exists at {safe_url(url)}; open it instead"
                )
            reg.schema.metadata.create_all(conn)
            conn.execute(
                reg.schema.meta.insert(),
                [
                    {"name": "schema_version", "value": SCHEMA_VERSION},
                    {"name": "universe", "value": universe.to_yaml()},
                ],
            )
        _log.info("created registry at %s", safe_url(url))
        return reg

    @classmethod
    def open(cls, url: str | sa.URL) -> Registry:
        """Open an existing registry (another schema version -> SchemaVersionError)."""
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                if not sa.inspect(conn).has_table("rc2_meta"):
                    raise SchemaVersionError(
                        f"{safe_url(url)} holds no rc2 registry (no rc2_meta table); create one first"
                    )
                meta = sa.Table("rc2_meta", sa.MetaData(), autoload_with=conn)
                values = {r[0]: r[1] for r in conn.execute(sa.select(meta.c.name, meta.c.value))}
        except Exception:
            engine.dispose()
            raise
        found = values.get("schema_version")
        if found != SCHEMA_VERSION:
            engine.dispose()
            raise SchemaVersionError(
                f"registry at {safe_url(url)} has schema version {found}, but this software "
                f"reads version {SCHEMA_VERSION}; use a matching rc2_platform release or migrate it"
            )
        return cls(engine, DimensionUniverse.from_yaml(values["universe"]))

    def close(self) -> None:
        """Release every pooled connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        self.engine.dispose()

    def refresh(self) -> None:
        """Drop caches (collections, chains, dataset types) after changes by other processes."""
        self.collections.clear_cache()
        self.datasets.clear_cache()
        self._lookup_cache.clear()

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A transaction shared by every registry call made inside the block.

        The datastore writes ``file_datastore_records`` through the yielded connection so
        registry rows and file records commit (or roll back) together.
        """
        if self._conn is not None:
            yield self._conn
            return
        try:
            # WRITE_TRANSACTION makes SQLite take its write lock at BEGIN (BEGIN IMMEDIATE):
            # two processes writing one registry then wait for each other (busy timeout)
            # instead of failing when a read-started transaction tries to write.
            with (
                self.engine.connect().execution_options(**{WRITE_TRANSACTION: True}) as conn,
                conn.begin(),
            ):
                self._conn = conn
                yield conn
        except BaseException:
            self.refresh()
            raise
        finally:
            self._conn = None

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        if self._conn is not None:
            yield self._conn
        else:
            with self.engine.connect() as conn:
                yield conn

    @contextmanager
    def _lookup(self) -> Iterator[sa.Connection]:
        """Connection for small read-only lookups.

        Inside :meth:`transaction` it is the transaction's connection. On server
        backends outside a transaction it is one connection per thread kept in
        AUTOCOMMIT mode, so each lookup sees the latest committed data without a pool
        checkout and pre-ping round trip per call. SQLite uses a pooled connection.
        """
        if self._conn is not None:
            yield self._conn
            return
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as conn:
                yield conn
            return
        cached: sa.Connection | None = getattr(self._local, "conn", None)
        if cached is None or cached.closed or cached.invalidated:
            cached = self._local.conn = self.engine.connect().execution_options(
                isolation_level="AUTOCOMMIT"
            )
        try:
            yield cached
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                self._local.conn = None
            raise

    def analyze(self, tables: Iterable[str] | None = None) -> None:
        """Refresh planner statistics (``ANALYZE``) for ``tables`` (default: every table).

        The default includes the per-dimension-group ``tags_*`` and ``calibs_*`` tables,
        which this process's schema object may not have loaded.
        """
        dialect = self.engine.dialect.name
        with self.engine.connect() as conn:
            existing = set(sa.inspect(conn).get_table_names())
            names = sorted(existing) if tables is None else [n for n in tables if n in existing]
            names = [n for n in names if not n.startswith("sqlite_")]
            if not names:
                return
            if dialect in ("mysql", "mariadb"):
                conn.exec_driver_sql("ANALYZE TABLE " + ", ".join(names))
            elif dialect == "postgresql":
                conn.exec_driver_sql("ANALYZE " + ", ".join(names))
            else:
                for name in names:
                    conn.exec_driver_sql(f"ANALYZE {name}")
            conn.commit()

    def refresh_statistics(self) -> list[str]:
        """ANALYZE the tables whose statistics are missing or stale; return their names.

        Cheap when nothing is stale (one catalog query). The graph builder calls it before
        its big query so that a fresh repository plans as well as an analyzed one.
        """
        from rc2_platform.registry._statistics import stale_tables

        if self._conn is not None:
            return []
        with self.engine.connect() as conn:
            names = stale_tables(conn)
        if names:
            self.analyze(names)
        return names

    def _maybe_analyze(self, count: int, tables: Iterable[str]) -> None:
        if count >= ANALYZE_THRESHOLD and self._conn is None:
            self.analyze(tables)

    # --- dimension records ------------------------------------------------------------

    def insert_dimension_records(
        self, element: str, records: Sequence[Mapping[str, Any]], *, skip_existing: bool = False
    ) -> int:
        """Insert records of ``element`` in batches and materialize their spatial overlaps.

        Parameters
        ----------
        element : str
            Element name, e.g. ``visit`` or ``patch``.
        records : Sequence[Mapping]
            Column values; a sky region as an ``lsst.sphgeom.Region`` under ``region`` and
            a :class:`Timespan` under ``timespan``.
        skip_existing : bool
            Leave records whose key exists untouched instead of failing.

        Returns
        -------
        int
            The number of records inserted.

        Raises
        ------
        DimensionError, DimensionValueError, ConflictingDefinitionError
            Unknown fields, wrong types or unknown referenced values, existing keys.
        """
        with self.transaction() as conn:
            n = self.records.insert(conn, element, records, skip_existing)
        self._maybe_analyze(n, [element, *self.schema.overlaps])
        return n

    def insert_dimension_columns(
        self, element: str, columns: Mapping[str, Any], *, skip_existing: bool = False
    ) -> int:
        """Columnar fast path of :meth:`insert_dimension_records` for bulk records.

        Parameters
        ----------
        element : str
            Element name, e.g. ``patch``.
        columns : Mapping[str, Any]
            One sequence or numpy array per column (a scalar is broadcast, e.g.
            ``skymap="hsc_rings_v1"``). Regions go under ``region`` as encoded bytes
            (:func:`rc2_platform.geometry.encode_quads`, or ``bytes(region.encode())``);
            timespans as ``timespan_begin``/``timespan_end`` TAI nanoseconds.
        skip_existing : bool
            Leave records whose key exists untouched instead of failing.

        Returns
        -------
        int
            The number of records inserted.

        Notes
        -----
        Rows go to the database at driver level (COPY on PostgreSQL) and overlaps of
        convex-polygon regions are computed with numpy (see ``docs/registry.md``).
        """
        with self.transaction() as conn:
            n = self.records.insert_columns(conn, element, columns, skip_existing)
        self._maybe_analyze(n, [element, *self.schema.overlaps])
        return n

    def sync_dimension_record(self, element: str, record: Mapping[str, Any]) -> bool:
        """Insert ``record`` unless an identical one exists; True if it was inserted.

        Raises ConflictingDefinitionError naming the differing fields.
        """
        with self.transaction() as conn:
            return self.records.sync(conn, element, record)

    # --- collections ------------------------------------------------------------------

    def register_run(self, name: str, doc: str | None = None) -> bool:
        """Create a RUN collection; False if it exists."""
        return self.register_collection(name, CollectionType.RUN, doc)

    def register_collection(
        self, name: str, type: CollectionType = CollectionType.TAGGED, doc: str | None = None
    ) -> bool:
        """Create a collection of ``type``; False if it exists with that type."""
        with self.transaction() as conn:
            return self.collections.register(conn, name, type, doc)

    def get_collection_type(self, name: str) -> CollectionType:
        """The type of collection ``name`` (MissingCollectionError if absent)."""
        with self._read() as conn:
            return self.collections.get(conn, name).type

    def set_collection_chain(self, parent: str, children: Sequence[str]) -> None:
        """Set the ordered children of CHAINED ``parent`` (cycles -> CollectionCycleError)."""
        with self.transaction() as conn:
            self.collections.set_chain(conn, parent, children)
        self._lookup_cache.clear()

    def get_collection_chain(self, parent: str) -> list[str]:
        """The ordered direct children of CHAINED ``parent``."""
        with self._read() as conn:
            return self.collections.get_chain(conn, parent)

    def flatten_collections(self, collections: CollectionArg) -> list[str]:
        """The non-CHAINED collections searched for ``collections``, in order."""
        with self._read() as conn:
            return [c.name for c in self.collections.flatten(conn, collections)]

    def query_collections(
        self,
        pattern: str | re.Pattern[str] | None = None,
        types: Iterable[CollectionType] | None = None,
    ) -> list[str]:
        """Collection names matching a glob (or compiled regex) and types, sorted."""
        with self._read() as conn:
            return self.collections.query(conn, pattern, types)

    def remove_collection(self, name: str) -> None:
        """Remove a collection; removing a RUN removes its datasets."""
        with self.transaction() as conn:
            self.collections.remove(conn, name)
        self.refresh()

    # --- dataset types ----------------------------------------------------------------

    def register_dataset_type(self, dataset_type: DatasetType) -> bool:
        """Register a dataset type; False if identical (different -> ConflictingDefinitionError)."""
        with self.transaction() as conn:
            return self.datasets.register(conn, dataset_type)

    def get_dataset_type(self, name: str) -> DatasetType:
        """A registered dataset type (MissingDatasetTypeError otherwise)."""
        with self._read() as conn:
            return self.datasets.get(conn, name).dataset_type

    def query_dataset_types(self, pattern: str | None = None) -> list[DatasetType]:
        """Registered dataset types whose names match the glob ``pattern``."""
        import fnmatch

        with self._read() as conn:
            types = self.datasets.query_types(conn)
        return [t for t in types if pattern is None or fnmatch.fnmatchcase(t.name, pattern)]

    # --- datasets ---------------------------------------------------------------------

    def _data_ids(
        self, stored: StoredDatasetType, data_ids: Iterable[Mapping[str, Any]]
    ) -> list[DataCoordinate]:
        dims = stored.dataset_type.dimensions
        ints = tuple(self.universe.key_type(d) == "int" for d in dims)
        checked: dict[tuple[str, Any], Any] = {}
        coerce = self.universe.coerce_value

        def check(k: str, v: Any) -> Any:
            key = (k, v)
            if key not in checked:
                checked[key] = coerce(k, v)
            return checked[key]

        out = []
        for d in data_ids:
            if isinstance(d, DataCoordinate) and d.dimensions == dims:
                out.append(d)
                continue
            # Fast path: plain ints for integer dimensions (strings are always checked).
            try:
                values = tuple(
                    v if i and type(v) is int else check(k, v)
                    for k, i, v in zip(dims, ints, [d[k] for k in dims], strict=True)
                )
            except (KeyError, TypeError):
                out.append(self.universe.data_id(d, dims))
                continue
            out.append(DataCoordinate(dims, values))
        return out

    def insert_datasets(
        self,
        dataset_type: str | DatasetType,
        data_ids: Iterable[Mapping[str, Any]],
        run: str,
        id_mode: DatasetIdGenMode = DatasetIdGenMode.UNIQUE,
    ) -> list[DatasetRef]:
        """Insert new datasets into RUN ``run`` (batched); return their refs.

        Raises DatasetConflictError if a (type, data ID) exists in the run,
        DimensionValueError for unknown data ID values, CollectionTypeError if ``run`` is
        not a RUN.
        """
        with self.transaction() as conn:
            stored = self.datasets.get(conn, dataset_type)
            rec = self.collections.require_type(
                conn, run, CollectionType.RUN, action="insert datasets into"
            )
            dt = stored.dataset_type
            coords = self._data_ids(stored, data_ids)
            if id_mode is DatasetIdGenMode.UNIQUE:
                ids = random_uuids(len(coords))
            else:
                ids = [make_dataset_id(dt, d, run, id_mode) for d in coords]
            refs = [DatasetRef(dt, d, run, i) for d, i in zip(coords, ids, strict=True)]
            self.datasets.insert_refs(conn, stored, refs, rec.id, idempotent=False)
        self._maybe_analyze(len(refs), ["dataset", stored.tags.name])
        return refs

    def import_datasets(self, refs: Iterable[DatasetRef]) -> list[DatasetRef]:
        """Insert refs with predetermined UUIDs; identical existing refs are skipped.

        Returns the refs that were new. Runs and dataset types must exist.
        """
        groups: dict[tuple[str, str], list[DatasetRef]] = {}
        for r in refs:
            groups.setdefault((r.dataset_type.name, r.run), []).append(r)
        new: list[DatasetRef] = []
        with self.transaction() as conn:
            for (type_name, run), group in groups.items():
                stored = self.datasets.get(conn, type_name)
                rec = self.collections.require_type(
                    conn, run, CollectionType.RUN, action="import datasets into"
                )
                dims = stored.dataset_type.dimensions
                fixed = [
                    r
                    if r.data_id.dimensions == dims and r.dataset_type == stored.dataset_type
                    else DatasetRef(
                        stored.dataset_type, self.universe.data_id(r.data_id, dims), run, r.id
                    )
                    for r in group
                ]
                new += self.datasets.insert_refs(conn, stored, fixed, rec.id, idempotent=True)
        self._maybe_analyze(len(new), ["dataset"])
        return new

    def remove_datasets(self, refs: Iterable[DatasetRef]) -> None:
        """Delete datasets (and their tags, calibrations and datastore records)."""
        ids = [r.id for r in refs]
        d = self.schema.dataset
        with self.transaction() as conn:
            for i in range(0, len(ids), 5000):
                conn.execute(d.delete().where(d.c.dataset_id.in_(ids[i : i + 5000])))

    def get_dataset(self, id: uuid.UUID | str) -> DatasetRef:
        """The ref of dataset ``id`` (DatasetNotFoundError if absent)."""
        did = id if isinstance(id, uuid.UUID) else uuid.UUID(str(id))
        d = self.schema.dataset
        with self._read() as conn:
            row = conn.execute(sa.select(d).where(d.c.dataset_id == did)).first()
            if row is None:
                raise DatasetNotFoundError(f"no dataset with id {did} in the registry")
            stored = self.datasets.by_id(conn, row.dataset_type_id)
            t = stored.tags
            dims = stored.dataset_type.dimensions
            vals = conn.execute(
                sa.select(*[t.c[x] for x in dims]).where(
                    t.c.dataset_id == did, t.c.collection_id == row.run_id
                )
            ).one()
            run = self.collections.by_id(conn, row.run_id).name
        return DatasetRef(stored.dataset_type, DataCoordinate(dims, tuple(vals)), run, did)

    def associate(self, collection: str, refs: Iterable[DatasetRef]) -> None:
        """Add existing datasets to TAGGED ``collection`` (one per type + data ID)."""
        by_type = _group_by_type(refs)
        with self.transaction() as conn:
            rec = self.collections.require_type(
                conn, collection, CollectionType.TAGGED, action="tag datasets into"
            )
            for name, group in by_type.items():
                stored = self.datasets.get(conn, name)
                t = stored.tags
                dims = stored.dataset_type.dimensions
                existing = set(
                    conn.execute(
                        sa.select(t.c.dataset_id).where(
                            t.c.collection_id == rec.id, t.c.dataset_id.in_([r.id for r in group])
                        )
                    ).scalars()
                )
                rows = [
                    dict(
                        zip(dims, r.data_id.subset(dims).values_tuple, strict=True),
                        dataset_id=r.id,
                        dataset_type_id=stored.id,
                        collection_id=rec.id,
                    )
                    for r in group
                    if r.id not in existing
                ]
                if rows:
                    try:
                        with conn.begin_nested() if conn.dialect.name == "postgresql" else _null():
                            conn.execute(t.insert(), rows)
                    except sa.exc.IntegrityError as exc:
                        self.datasets.explain_integrity_error(conn, stored, group, rec.id, exc)
                self.datasets.note_summary(conn, rec.id, stored.id)

    def disassociate(self, collection: str, refs: Iterable[DatasetRef]) -> None:
        """Remove datasets from TAGGED ``collection``."""
        by_type = _group_by_type(refs)
        with self.transaction() as conn:
            rec = self.collections.require_type(
                conn, collection, CollectionType.TAGGED, action="untag datasets from"
            )
            for name, group in by_type.items():
                t = self.datasets.get(conn, name).tags
                conn.execute(
                    t.delete().where(
                        t.c.collection_id == rec.id, t.c.dataset_id.in_([r.id for r in group])
                    )
                )

    def certify(self, collection: str, refs: Iterable[DatasetRef], timespan: Timespan) -> None:
        """Certify datasets into CALIBRATION ``collection`` valid over ``timespan``.

        Overlapping validity for the same type + data ID -> CalibrationConflictError.
        """
        by_type = _group_by_type(refs)
        with self.transaction() as conn:
            rec = self.collections.require_type(
                conn, collection, CollectionType.CALIBRATION, action="certify into"
            )
            for name, group in by_type.items():
                stored = self.datasets.get(conn, name)
                if not stored.dataset_type.is_calibration:
                    raise CollectionTypeError(
                        f"dataset type {name!r} is not a calibration type; it cannot be certified"
                    )
                self.datasets.certify(conn, stored, rec.id, group, timespan)

    def decertify(
        self,
        collection: str,
        dataset_type: str | DatasetType,
        timespan: Timespan,
        data_ids: Iterable[Mapping[str, Any]] | None = None,
    ) -> int:
        """Remove validity within ``timespan`` (splitting ranges); return ranges touched."""
        with self.transaction() as conn:
            rec = self.collections.require_type(
                conn, collection, CollectionType.CALIBRATION, action="decertify from"
            )
            stored = self.datasets.get(conn, dataset_type)
            ids = None if data_ids is None else self._data_ids(stored, data_ids)
            return self.datasets.decertify(conn, stored, rec.id, timespan, ids)

    # --- dataset searches -------------------------------------------------------------

    def _search_path(
        self, conn: sa.Connection, stored: StoredDatasetType, collections: CollectionArg
    ) -> list[CollectionRecord]:
        flat = self.collections.flatten(conn, collections)
        present = self.datasets.collections_with(conn, stored.id, [c.id for c in flat])
        return [c for c in flat if c.id in present]

    def _to_ref(
        self, conn: sa.Connection, stored: StoredDatasetType, row: Sequence[Any], n: int
    ) -> DatasetRef:
        return DatasetRef(
            stored.dataset_type,
            DataCoordinate(stored.dataset_type.dimensions, tuple(row[:n])),
            self.collections.by_id(conn, row[n + 1]).name,
            row[n],
        )

    def find_datasets(
        self,
        dataset_type: str | DatasetType,
        collections: CollectionArg,
        data_ids: Iterable[Mapping[str, Any]] | None = None,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        timespan: Timespan | None = None,
    ) -> dict[DataCoordinate, DatasetRef]:
        """Find-first search of ``collections`` for a whole set of data IDs in one query.

        Returns a mapping from data ID (the dataset type's dimensions) to the ref found
        in the first collection of the flattened search path holding it.
        """
        refs = self._search(dataset_type, collections, data_ids, where, bind, timespan, True)
        return {r.data_id: r for r in refs}

    def query_datasets(
        self,
        dataset_type: str | DatasetType,
        collections: CollectionArg,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        find_first: bool = True,
    ) -> list[DatasetRef]:
        """Datasets of a type in ``collections`` matching ``where`` (first found per data ID)."""
        return self._search(dataset_type, collections, None, where, bind, None, find_first)

    def _search(
        self,
        dataset_type: str | DatasetType,
        collections: CollectionArg,
        data_ids: Iterable[Mapping[str, Any]] | None,
        where: str,
        bind: Mapping[str, Any] | None,
        timespan: Timespan | None,
        find_first: bool,
    ) -> list[DatasetRef]:
        with self._read() as conn:
            stored = self.datasets.get(conn, dataset_type)
            dims = stored.dataset_type.dimensions
            wanted = (
                None
                if data_ids is None
                else {d.values_tuple for d in self._data_ids(stored, data_ids)}
            )
            path = self._search_path(conn, stored, collections)
            expr = self.queries.parse(where)
            stmt = self.queries.dataset_rows(
                stored,
                path,
                find_first=find_first,
                timespan=timespan,
                keys=None if wanted is None else list(wanted),
            )
            if stmt is None or wanted == set():
                return []
            if expr is not None:
                wdims, elements = self.queries.referenced(expr)
                sub = stmt.subquery("found")
                plan = self.queries.plan(set(dims) | wdims, elements, [sub])
                stmt = (
                    sa.select(*sub.c)
                    .select_from(plan.from_)
                    .where(*self.queries.where_clause(plan, expr, bind))
                )
            return self._rows_to_refs(conn, stored, select_raw(conn, stmt), wanted)

    def _rows_to_refs(
        self,
        conn: sa.Connection,
        stored: StoredDatasetType,
        rows: Sequence[Sequence[Any]],
        wanted: set[tuple[Any, ...]] | None,
    ) -> list[DatasetRef]:
        """Refs from raw ``(dims..., dataset_id, run_id)`` rows (the read-back hot path)."""
        dt = stored.dataset_type
        dims = dt.dimensions
        n = len(dims)
        from_db = uuid_from_db(conn.dialect)
        runs: dict[int, str] = {}
        out = []
        make_coord = DataCoordinate
        make_ref = DatasetRef
        for row in rows:
            values = tuple(row[:n])
            if wanted is not None and values not in wanted:
                continue
            run_id = row[n + 1]
            run = runs.get(run_id)
            if run is None:
                run = runs[run_id] = self.collections.by_id(conn, run_id).name
            out.append(make_ref(dt, make_coord(dims, values), run, from_db(row[n])))
        return out

    def find_dataset(
        self,
        dataset_type: str | DatasetType,
        data_id: Mapping[str, Any],
        collections: CollectionArg,
        timespan: Timespan | None = None,
    ) -> DatasetRef | None:
        """Find-first lookup of one data ID (cached statement; None if not found)."""
        coll_key = (collections,) if isinstance(collections, str) else tuple(collections)
        key = (
            dataset_type if isinstance(dataset_type, str) else dataset_type.name,
            coll_key,
            timespan,
        )
        with self._lookup() as conn:
            cached = self._lookup_cache.get(key)
            if cached is None:
                stored = self.datasets.get(conn, dataset_type)
                path = self._search_path(conn, stored, collections)
                stmt = self.queries.dataset_rows(stored, path, timespan=timespan, key_params=True)
                cached = self._lookup_cache[key] = (stmt, stored)
            stmt, stored = cached
            dims = stored.dataset_type.dimensions
            coord = (
                data_id
                if isinstance(data_id, DataCoordinate) and data_id.dimensions == dims
                else self._data_ids(stored, [data_id])[0]
            )
            if stmt is None:
                return None
            row = conn.execute(
                stmt, {f"k_{d}": v for d, v in zip(dims, coord.values_tuple, strict=True)}
            ).first()
            if row is None:
                return None
            n = len(dims)
            run = self.collections.by_id(conn, row[n + 1]).name
            return DatasetRef(stored.dataset_type, coord, run, row[n])

    def find_calibrations(
        self,
        dataset_type: str | DatasetType,
        collections: CollectionArg,
        data_ids_and_times: Sequence[tuple[Mapping[str, Any], Timespan]],
    ) -> dict[tuple[DataCoordinate, Timespan], DatasetRef]:
        """Resolve many (data ID, time) pairs against a search path in one query.

        The calibration data ID is the dataset type's dimensions taken from each data ID
        (which may have more dimensions, e.g. an exposure's). The first collection in the
        search order with a dataset whose validity overlaps the time wins (a RUN or
        TAGGED collection matches any time); within one CALIBRATION collection the
        latest-beginning validity wins.
        """
        with self._read() as conn:
            stored = self.datasets.get(conn, dataset_type)
            dims = stored.dataset_type.dimensions
            items = [(self.universe.data_id(d, dims), t) for d, t in data_ids_and_times]
            path = self._search_path(conn, stored, collections)
            if not items or not path:
                return {}
            keys = list({d.values_tuple for d, _ in items})
            rows = self.datasets.membership_rows(conn, stored, path, keys)
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

    # --- data ID and record queries ---------------------------------------------------

    def query_data_id_rows(
        self,
        dimensions: Iterable[str],
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        datasets: Iterable[str | DatasetType] | None = None,
        collections: CollectionArg | None = None,
    ) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        """Distinct data IDs as raw rows: (column names, rows), columns = expanded dimensions.

        Joins implied dimensions, overlap tables when the dimensions mix spatial families,
        and (with ``datasets``) the datasets existing in ``collections``.
        """
        dims = self.universe.expand(dimensions)
        with self._read() as conn:
            expr = self.queries.parse(where)
            wdims, elements = self.queries.referenced(expr)
            relations: list[sa.FromClause] = []
            for dt in datasets or ():
                stored = self.datasets.get(conn, dt)
                if collections is None:
                    raise CollectionTypeError("a dataset constraint needs collections to search")
                path = self._search_path(conn, stored, collections)
                stmt = self.queries.dataset_rows(stored, path, find_first=False)
                if stmt is None:
                    return dims, []
                relations.append(stmt.subquery(f"ds{len(relations)}"))
            plan = self.queries.plan(set(dims) | wdims, elements, relations)
            stmt = (
                sa.select(*[plan.dims[d] for d in dims])
                .select_from(plan.from_)
                .where(*self.queries.where_clause(plan, expr, bind))
                .distinct()
            )
            return dims, [tuple(r) for r in conn.execute(stmt)]

    def query_data_ids(
        self,
        dimensions: Iterable[str],
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        datasets: Iterable[str | DatasetType] | None = None,
        collections: CollectionArg | None = None,
        *,
        full: bool = False,
    ) -> list[DataCoordinate]:
        """Distinct data IDs of ``dimensions`` matching ``where``.

        The data IDs hold the required dimensions (with ``full`` also the implied ones),
        sorted by value.
        """
        dimensions = list(dimensions)
        names, rows = self.query_data_id_rows(dimensions, where, bind, datasets, collections)
        keep = self.universe.expand(dimensions) if full else self.universe.required(dimensions)
        idx = [names.index(d) for d in keep]
        out = {DataCoordinate(keep, tuple(r[i] for i in idx)) for r in rows}
        return sorted(out, key=lambda c: tuple((str(type(v)), v) for v in c.values_tuple))

    def query_dimension_records(
        self, element: str, where: str = "", bind: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Records of ``element`` matching ``where`` (regions and timespans decoded)."""
        el = self.universe[element]
        if not el.has_table:
            raise DimensionError(f"{element!r} has no records (it is a sky pixelization)")
        table = self.schema.elements[element]
        with self._read() as conn:
            expr = self.queries.parse(where)
            wdims, elements = self.queries.referenced(expr)
            plan = self.queries.plan(set(el.required) | wdims, elements | {element})
            stmt = (
                sa.select(plan.tables[element])
                .select_from(plan.from_)
                .where(*self.queries.where_clause(plan, expr, bind))
                .order_by(*[table.c[d] for d in el.required])
            )
            if plan.distinct or len(plan.tables) > 1:
                stmt = stmt.distinct() if not el.has_region else stmt
            rows = conn.execute(stmt).mappings().all()
        seen: set[tuple[Any, ...]] = set()
        out = []
        for row in rows:
            key = tuple(row[d] for d in el.required)
            if key not in seen:
                seen.add(key)
                out.append(self.records.from_row(el, row))
        return out


def _group_by_type(refs: Iterable[DatasetRef]) -> dict[str, list[DatasetRef]]:
    out: dict[str, list[DatasetRef]] = {}
    for r in refs:
        out.setdefault(r.dataset_type.name, []).append(r)
    return out


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: Any) -> None:
        return None
