"""The registry: what exists, with which data ID, in which collection (SQLAlchemy Core)."""

from __future__ import annotations

import itertools
import logging
import operator
import re
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import (
    CollectionType,
    DatasetIdGenMode,
    DatasetRef,
    DatasetType,
    make_dataset_id,
)
from rc2_platform.core.timespan import Timespan
from rc2_platform.errors import (
    CollectionTypeError,
    DatasetNotFoundError,
    DimensionError,
    SchemaVersionError,
)
from rc2_platform.registry._bulk import (
    no_gc,
    select_raw,
    time_ordered_uuids,
    uuid_from_db,
    uuid_from_hex,
    uuids_to_db,
)
from rc2_platform.registry._bulkload import insert_column_chunks
from rc2_platform.registry._collections import CollectionManager, CollectionRecord
from rc2_platform.registry._datasets import DatasetManager, StoredDatasetType
from rc2_platform.registry._engine import WRITE_TRANSACTION, make_engine, safe_url
from rc2_platform.registry._lookup import CompiledLookup, LookupConnections, fetch_one_in
from rc2_platform.registry._queries import QueryBuilder
from rc2_platform.registry._records import RecordManager
from rc2_platform.registry.dimensions import DimensionUniverse
from rc2_platform.registry.schema import SCHEMA_VERSION, RegistrySchema

_log = logging.getLogger(__name__)

#: Find-first over a chain of at most this many RUNs runs one query per run.
MAX_PER_RUN_QUERIES = 20

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
        self._lookups = LookupConnections(engine)
        self._run_names: dict[int, str] = {}
        self._lookup_generation = -1
        self._lookup_cache: dict[
            tuple[Any, ...], tuple[CompiledLookup | None, StoredDatasetType]
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
        self._lookups.discard()
        self.engine.dispose()

    def refresh(self) -> None:
        """Drop caches (collections, chains, dataset types) after changes by other processes."""
        self.collections.clear_cache()
        self.datasets.clear_cache()
        self._lookup_cache.clear()
        self._run_names.clear()

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
        self,
        element: str,
        columns: Mapping[str, Any] | Iterable[Mapping[str, Any]],
        *,
        skip_existing: bool = False,
    ) -> int:
        """Columnar fast path of :meth:`insert_dimension_records` for bulk records.

        Parameters
        ----------
        element : str
            Element name, e.g. ``patch``.
        columns : Mapping[str, Any] or Iterable[Mapping[str, Any]]
            One sequence or numpy array per column (a scalar is broadcast, e.g.
            ``skymap="hsc_rings_v1"``). Regions go under ``region`` as encoded bytes
            (:func:`rc2_platform.geometry.encode_quads`, or ``bytes(region.encode())``);
            timespans as ``timespan_begin``/``timespan_end`` TAI nanoseconds.
            An *iterable* of such mappings is a bulk load, all in one transaction: if
            the element's table is empty, its secondary indexes (and those of its
            sky-pixel overlap tables, and on PostgreSQL its foreign keys) are created
            after the load. A mapping may also carry precomputed sky-pixel overlaps
            under ``"overlaps:<skypix>"`` (e.g. ``"overlaps:htm7"``) as ``(row index,
            pixel id)`` integer arrays, e.g. from
            :func:`rc2_platform.registry._spatial.grid_pixel_overlaps`; they are
            trusted, and ignored when ``skip_existing`` filters rows.
        skip_existing : bool
            Leave records whose key exists untouched instead of failing.

        Returns
        -------
        int
            The number of records inserted.

        Notes
        -----
        Integer numpy columns, scalar keys and fixed-size region blobs go to the
        database as arrays (bit-packed ``json_each`` on SQLite, binary COPY on
        PostgreSQL; see ``rc2_platform/registry/_bulkload.py``); other input takes the
        driver-level tuple path. Overlaps of convex-polygon regions are computed with
        numpy. Statistics are refreshed (``ANALYZE``) after 10,000 rows or more.
        """
        stream = not isinstance(columns, Mapping)
        chunks: Iterable[Mapping[str, Any]]
        chunks = [columns] if isinstance(columns, Mapping) else columns
        with self.transaction() as conn:
            n = insert_column_chunks(
                self.records, conn, element, chunks, skip_existing, stream=stream
            )
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
            rec = self.collections.get(conn, name)
            if rec.type == CollectionType.TAGGED:
                # tags rows carry no foreign key to collection (insert speed): delete them.
                self.datasets.remove_tagged(conn, rec.id)
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
        values = self._data_id_values(stored, data_ids)
        return DataCoordinate.from_value_rows(dims, values)

    def _data_id_values(
        self, stored: StoredDatasetType, data_ids: Iterable[Mapping[str, Any]]
    ) -> list[tuple[Any, ...]]:
        """Checked, normalised value tuples (dataset type dimension order) of data IDs."""
        dims = stored.dataset_type.dimensions
        items = data_ids if isinstance(data_ids, list) else list(data_ids)
        try:
            rows = self._value_rows(dims, items)
        except (KeyError, TypeError):
            # Some data ID lacks a dimension (or is not a mapping): the slow path names it.
            rows = [
                d.values_tuple
                if isinstance(d, DataCoordinate) and d.dimensions == dims
                else self.universe.data_id(d, dims).values_tuple
                for d in items
            ]
        return rows

    def _value_rows(
        self, dims: tuple[str, ...], items: Sequence[Mapping[str, Any]]
    ) -> list[tuple[Any, ...]]:
        """Checked value tuples of data IDs, validating each distinct value once per column."""
        get = operator.itemgetter(*dims)
        one = len(dims) == 1
        rows: list[tuple[Any, ...]] = [
            d.values_tuple
            if type(d) is DataCoordinate and d.dimensions == dims
            else ((get(d),) if one else get(d))
            for d in items
        ]
        if not rows:
            return rows
        coerce = self.universe.coerce_value
        fixes: dict[int, dict[tuple[type, Any], Any]] = {}
        for i, (name, column) in enumerate(zip(dims, zip(*rows, strict=True), strict=True)):
            is_int = self.universe.key_type(name) == "int"
            for kind, value in {(type(v), v) for v in column}:
                if is_int and kind is int:
                    continue
                fixed = coerce(name, value)
                if type(fixed) is not kind or fixed != value:
                    fixes.setdefault(i, {})[(kind, value)] = fixed
        if fixes:
            rows = [
                tuple(fixes[i].get((type(v), v), v) if i in fixes else v for i, v in enumerate(row))
                for row in rows
            ]
        return rows

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
        with self.transaction() as conn, no_gc():
            stored = self.datasets.get(conn, dataset_type)
            rec = self.collections.require_type(
                conn, run, CollectionType.RUN, action="insert datasets into"
            )
            dt = stored.dataset_type
            keys = self._data_id_values(stored, data_ids)
            self.datasets.check_data_ids(conn, stored, keys)
            # Per-row work as C-level map/zip over columns (100k rows: ~0.1 s saved).
            repeat = itertools.repeat
            coords = DataCoordinate.from_value_rows(dt.dimensions, keys)
            if id_mode is DatasetIdGenMode.UNIQUE:
                ids = time_ordered_uuids(len(coords))
            else:
                ids = [make_dataset_id(dt, d, run, id_mode) for d in coords]
            refs = list(map(DatasetRef, repeat(dt), coords, repeat(run), ids))
            db_ids = uuids_to_db(conn.dialect, ids)
            type_id, run_id = stored.id, rec.id
            self.datasets.write_rows(
                conn,
                stored,
                run_id,
                list(zip(db_ids, repeat(type_id), repeat(run_id), strict=False)),
                list(
                    map(
                        tuple.__add__,
                        zip(repeat(type_id), repeat(run_id), db_ids, strict=False),
                        keys,
                    )
                ),
                refs,
            )
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
                    self.datasets.check_data_ids(
                        conn, stored, [tuple(r[x] for x in dims) for r in rows]
                    )
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
        with no_gc():
            return dict(zip(map(operator.attrgetter("data_id"), refs), refs, strict=True))

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
        # Fetching and wrapping ~100k rows must not trigger full GC passes over the heap.
        with self._read() as conn, no_gc():
            stored = self.datasets.get(conn, dataset_type)
            dims = stored.dataset_type.dimensions
            wanted = (
                None
                if data_ids is None
                else {d.values_tuple for d in self._data_ids(stored, data_ids)}
            )
            path = self._search_path(conn, stored, collections)
            if not path or wanted == set():
                return []
            # A short chain of RUNs: one plain indexed query per run, merged in Python so
            # the earlier run wins, instead of a window function over every row in SQL.
            per_run = find_first and 1 < len(path) <= MAX_PER_RUN_QUERIES and _all_runs(path)
            rows: Any = []
            for part in [[c] for c in reversed(path)] if per_run else [path]:
                stmt = self._search_statement(
                    stored, part, find_first, timespan, wanted, where, bind
                )
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
            return self._rows_to_refs(conn, stored, rows, wanted, keys)

    def _search_statement(
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
        plan = self.queries.plan(set(stored.dataset_type.dimensions) | wdims, elements, [sub])
        return (
            sa.select(*sub.c)
            .select_from(plan.from_)
            .where(*self.queries.where_clause(plan, expr, bind))
        )

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
        if conn.dialect.name != "postgresql":
            ids = map(uuid_from_hex, ids)
        elif not isinstance(rows[0][n], uuid.UUID):
            ids = map(uuid_from_db(conn.dialect), ids)
        coords = DataCoordinate.from_value_rows(dims, keys)
        return list(
            map(DatasetRef, itertools.repeat(dt), coords, map(names.__getitem__, run_ids), ids)
        )

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
            with self._read() as conn:
                stored = self.datasets.get(conn, dataset_type)
                path = self._search_path(conn, stored, collections)
                stmt = self.queries.dataset_rows(stored, path, timespan=timespan, key_params=True)
                dims = stored.dataset_type.dimensions
                compiled = None if stmt is None else CompiledLookup.build(stmt, dims, conn.dialect)
            cached = self._lookup_cache[key] = (compiled, stored)
        compiled, stored = cached
        dims = stored.dataset_type.dimensions
        coord = (
            data_id
            if isinstance(data_id, DataCoordinate) and data_id.dimensions == dims
            else self._data_ids(stored, [data_id])[0]
        )
        if compiled is None:
            return None
        args = compiled.args(coord.values_tuple)
        if self._conn is not None:
            row = fetch_one_in(self._conn, compiled.sql, args)
        else:
            row = self._lookups.fetch_one(compiled.sql, args)
        if row is None:
            return None
        n = len(dims)
        with self._read() if row[n + 1] not in self._run_names else _null() as conn:
            run = self._run_name(conn, row[n + 1])
        dataset_id = row[n]
        if not isinstance(dataset_id, uuid.UUID):
            dataset_id = uuid_from_hex(dataset_id)
        return DatasetRef(stored.dataset_type, coord, run, dataset_id)

    def _run_name(self, conn: Any, run_id: int) -> str:
        name = self._run_names.get(run_id)
        if name is None:
            name = self._run_names[run_id] = self.collections.by_id(conn, run_id).name
        return name

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
            return dims, [tuple(r) for r in conn.execute(stmt).fetchall()]

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
