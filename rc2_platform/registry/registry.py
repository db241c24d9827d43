"""The registry facade: what exists, with which data ID, in which collection.

:class:`Registry` is the one entry point of the registry layer; the work is done by the
managers beside it (every SQL statement of rc2_platform lives in this package):

- ``_connections.py``: the shared transaction and the kept lookup connections;
- ``_records.py`` / ``_bulkload.py``: dimension records and their spatial overlaps;
- ``_collections.py``, ``_datasets.py``, ``_calibrations.py``: collections, dataset
  types and datasets, validity ranges;
- ``_datastore_records.py``: where each dataset's file is;
- ``_search.py``: find-first dataset search; ``_data_id_queries.py``: data IDs and records;
- ``_queries.py``: joins and where-expressions; ``_dialect.py``: every backend difference.
"""

from __future__ import annotations

import fnmatch
import itertools
import logging
import operator
import re
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
from rc2_platform.core.datastore_record import DatastoreRecord
from rc2_platform.core.timespan import Timespan
from rc2_platform.errors import (
    CollectionTypeError,
    DatasetNotFoundError,
    MigrationRequiredError,
    SchemaVersionError,
)
from rc2_platform.registry._admin import RegistryAdmin
from rc2_platform.registry._bulk import no_gc, time_ordered_uuids
from rc2_platform.registry._bulkload import insert_column_chunks
from rc2_platform.registry._calibrations import CalibrationManager
from rc2_platform.registry._collections import CollectionManager
from rc2_platform.registry._connections import Connections
from rc2_platform.registry._data_id_queries import DataIdQueries
from rc2_platform.registry._data_ids import data_id_values
from rc2_platform.registry._data_ids import data_ids as _data_ids
from rc2_platform.registry._dataset_columns import DatasetColumns, import_dataset_columns
from rc2_platform.registry._datasets import DatasetManager
from rc2_platform.registry._datastore_records import DatastoreRecordManager
from rc2_platform.registry._dialect import WRITE_TRANSACTION, backend
from rc2_platform.registry._engine import existing_database_url, make_engine, safe_url
from rc2_platform.registry._migrate import MigrationReport, is_migratable, stamp_head
from rc2_platform.registry._queries import QueryBuilder
from rc2_platform.registry._records import RecordManager
from rc2_platform.registry._search import CollectionArg, DatasetColumnsFound, DatasetSearch
from rc2_platform.registry.dimensions import DimensionUniverse
from rc2_platform.registry.schema import SCHEMA_VERSION, RegistrySchema

_log = logging.getLogger(__name__)

#: Inserts of at least this many rows refresh planner statistics afterwards.
ANALYZE_THRESHOLD = 10_000

#: Datastore records of at least this many refs of one RUN are read per RUN, not by id.
BULK_RUN_READ = 2_000

#: A table is stale when more than this fraction of its rows changed since its last ANALYZE.
STALE_FRACTION = 0.2

__all__ = ["ANALYZE_THRESHOLD", "CollectionArg", "DatasetColumns", "Registry"]


class Registry(RegistryAdmin):
    """A registry database. Build with :meth:`create` or :meth:`open`.

    Every public method runs in its own transaction unless called inside
    :meth:`transaction`, in which case all work shares that one transaction. The
    data-management methods (users of a collection, chain edits, dataset-type removal,
    certifications) come from :class:`~rc2_platform.registry._admin.RegistryAdmin`.
    """

    def __init__(self, engine: sa.Engine, universe: DimensionUniverse):
        self.engine = engine
        self.universe = universe
        self.schema = RegistrySchema(universe)
        self.records = RecordManager(self.schema)
        self.collections = CollectionManager(self.schema)
        self.datasets = DatasetManager(self.schema)
        self.calibrations = CalibrationManager(self.datasets)
        self.datastore_records = DatastoreRecordManager(self.schema)
        self.queries = QueryBuilder(self.schema)
        self._db = Connections(engine, on_rollback=self.refresh)
        self._search = DatasetSearch(self._db, self.collections, self.datasets, self.queries)
        self._data_ids = DataIdQueries(self._db, self.records, self._search)

    # --- lifecycle --------------------------------------------------------------------

    @classmethod
    def create(cls, url: str | sa.URL, universe: DimensionUniverse | None = None) -> Registry:
        """Create the schema in an empty database and return the registry.

        Server URLs may omit the password; it is then read from ``RC2_DB_PASSWORD``.
        """
        universe = universe or DimensionUniverse.default()
        engine = make_engine(url)
        reg = cls(engine, universe)
        with engine.connect().execution_options(**{WRITE_TRANSACTION: True}) as conn, conn.begin():
            backend(conn).lock_schema_creation(conn)
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
            stamp_head(conn)
        _log.info("created registry at %s", safe_url(url))
        return reg

    @classmethod
    def open(cls, url: str | sa.URL, *, read_only: bool = False) -> Registry:
        """Open an existing registry (another schema version -> SchemaVersionError).

        Opening never creates or converts a database: a missing or empty SQLite file is
        an error. With ``read_only`` a SQLite registry is opened ``mode=ro`` (also on a
        read-only filesystem) and nothing can be written through it.
        """
        url = existing_database_url(url, read_only)
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
        if is_migratable(found):
            engine.dispose()
            raise MigrationRequiredError(
                f"registry at {safe_url(url)} has schema version {found}, but this software "
                f"reads version {SCHEMA_VERSION}; upgrade it with `rc2 migrate REPO` "
                "(back up a MariaDB registry first)"
            )
        if found != SCHEMA_VERSION:
            engine.dispose()
            raise SchemaVersionError(
                f"registry at {safe_url(url)} has schema version {found}, but this software "
                f"reads version {SCHEMA_VERSION}; use a matching rc2_platform release or migrate it"
            )
        return cls(engine, DimensionUniverse.from_yaml(values["universe"]))

    @staticmethod
    def migrate(url: str | sa.URL, *, dry_run: bool = False) -> MigrationReport:
        """Upgrade the registry at ``url`` to this software's schema (Alembic revisions).

        See :func:`rc2_platform.registry._migrate.migrate`; ``dry_run`` only plans.
        """
        from rc2_platform.registry._migrate import migrate

        return migrate(
            str(url) if isinstance(url, str) else url.render_as_string(False), dry_run=dry_run
        )

    @property
    def url(self) -> str:
        """The database URL with any password hidden."""
        return safe_url(self.engine.url)

    def limit_statement_time(self, seconds: float) -> None:
        """Stop every statement running longer than ``seconds`` (the butler server's limit).

        See :mod:`rc2_platform.registry.limits` (``query_deadline`` for SQLite threads).
        """
        from rc2_platform.registry.limits import limit_statement_time

        limit_statement_time(self.engine, seconds)

    def close(self) -> None:
        """Release every pooled connection."""
        self._db.close()

    def refresh(self) -> None:
        """Drop caches (collections, chains, dataset types) after changes by other processes."""
        self.collections.clear_cache()
        self.datasets.clear_cache()
        self._search.clear_cache()

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A transaction shared by every registry call made inside the block.

        Registry rows and datastore records written inside it commit (or roll back)
        together. The yielded connection is for the registry's own managers.
        """
        with self._db.transaction() as conn:
            yield conn

    def analyze(self, tables: Iterable[str] | None = None) -> None:
        """Refresh planner statistics (``ANALYZE``) for ``tables`` (default: every table).

        The default includes the per-dimension-group ``tags_*`` and ``calibs_*`` tables,
        which this process's schema object may not have loaded.
        """
        with self.engine.connect() as conn:
            be = backend(conn)
            existing = set(sa.inspect(conn).get_table_names())
            names = sorted(existing) if tables is None else [n for n in tables if n in existing]
            names = [n for n in names if not be.is_internal_table(n)]
            if not names:
                return
            be.analyze(conn, names)
            conn.commit()

    def analyze_elements(self, elements: Iterable[str]) -> None:
        """Refresh planner statistics of dimension elements and their overlap tables.

        Bulk ingests call this after inserting many records (visits, a sky map).
        """
        elements = set(elements)
        tables = [e for e in sorted(elements) if self.universe[e].has_table]
        tables += [ov.table for ov in self.universe.config.overlaps if {ov.a, ov.b} & elements]
        self.analyze(tables)

    def refresh_statistics(self) -> list[str]:
        """ANALYZE the tables whose statistics are missing or stale; return their names.

        Cheap when nothing is stale (one catalog query). The graph builder calls it before
        its big query so that a fresh repository plans as well as an analyzed one. Only
        PostgreSQL tracks staleness: SQLite's planner copes without statistics on these
        joins (measured) and MariaDB keeps persistent statistics updated by InnoDB itself.
        """
        if self._db.current is not None:
            return []
        with self.engine.connect() as conn:
            names = backend(conn).stale_tables(conn, STALE_FRACTION)
        if names:
            self.analyze(names)
        return names

    def _maybe_analyze(self, count: int, tables: Iterable[str]) -> None:
        if count >= ANALYZE_THRESHOLD and self._db.current is None:
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
            :func:`rc2_platform.geometry.polygon_overlaps.grid_pixel_overlaps`; they are
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
        with self._db.read() as conn:
            return self.collections.get(conn, name).type

    def set_collection_chain(self, parent: str, children: Sequence[str]) -> None:
        """Set the ordered children of CHAINED ``parent`` (cycles -> CollectionCycleError)."""
        with self.transaction() as conn:
            self.collections.set_chain(conn, parent, children)
        self._search.clear_cache()

    def get_collection_chain(self, parent: str) -> list[str]:
        """The ordered direct children of CHAINED ``parent``."""
        with self._db.read() as conn:
            return self.collections.get_chain(conn, parent)

    def flatten_collections(self, collections: CollectionArg) -> list[str]:
        """The non-CHAINED collections searched for ``collections``, in order."""
        with self._db.read() as conn:
            return [c.name for c in self.collections.flatten(conn, collections)]

    def query_collections(
        self,
        pattern: str | re.Pattern[str] | None = None,
        types: Iterable[CollectionType] | None = None,
    ) -> list[str]:
        """Collection names matching a glob (or compiled regex) and types, sorted."""
        with self._db.read() as conn:
            return self.collections.query(conn, pattern, types)

    def remove_collection(self, name: str, *, unlink_from_chains: bool = False) -> None:
        """Remove a collection; removing a RUN removes its datasets.

        A child of a chain is refused (CollectionError naming the chains) unless
        ``unlink_from_chains`` drops it from them in the same transaction.
        """
        with self.transaction() as conn:
            rec = self.collections.get(conn, name)
            if unlink_from_chains:
                for parent_id in self._usage.chain_parents(conn, rec.id):
                    self._usage.remove_from_chain(conn, parent_id, rec.id)
            if rec.type == CollectionType.TAGGED:
                # tags rows carry no foreign key to collection (insert speed): delete them.
                self.datasets.remove_tagged(conn, rec.id)
            elif rec.type == CollectionType.RUN:
                # nor to dataset: the datasets go with their tags rows and file records.
                d = self.schema.dataset
                self.datasets.delete_where(conn, d.c.run_id == rec.id)
            self.collections.remove(conn, name)
        self.refresh()

    # --- dataset types ----------------------------------------------------------------

    def register_dataset_type(self, dataset_type: DatasetType) -> bool:
        """Register a dataset type; False if identical (different -> ConflictingDefinitionError)."""
        with self.transaction() as conn:
            return self.datasets.register(conn, dataset_type)

    def get_dataset_type(self, name: str) -> DatasetType:
        """A registered dataset type (MissingDatasetTypeError otherwise)."""
        with self._db.read() as conn:
            return self.datasets.get(conn, name).dataset_type

    def query_dataset_types(self, pattern: str | None = None) -> list[DatasetType]:
        """Registered dataset types whose names match the glob ``pattern``."""
        with self._db.read() as conn:
            types = self.datasets.query_types(conn)
        return [t for t in types if pattern is None or fnmatch.fnmatchcase(t.name, pattern)]

    # --- datasets ---------------------------------------------------------------------

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
            keys = data_id_values(self.universe, stored.dataset_type.dimensions, data_ids)
            self.datasets.check_data_ids(conn, stored, keys)
            # Per-row work as C-level map/zip over columns (100k rows: ~0.1 s saved).
            repeat = itertools.repeat
            coords = DataCoordinate.from_value_rows(dt.dimensions, keys)
            if id_mode is DatasetIdGenMode.UNIQUE:
                ids = time_ordered_uuids(len(coords))
            else:
                ids = [make_dataset_id(dt, d, run, id_mode) for d in coords]
            refs = list(map(DatasetRef, repeat(dt), coords, repeat(run), ids))
            db_ids = backend(conn).uuids_to_db(ids)
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
        with self.transaction() as conn, no_gc():
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

    def import_dataset_columns(self, run: str, batches: Sequence[DatasetColumns]) -> int:
        """Register datasets given column-wise (with their files' datastore records).

        The bulk path of registration (``rc2 aggregate``): ids are predetermined UUIDs
        as text, data IDs value tuples in each dataset type's dimension order; no ref
        object is built per row. Idempotent: datasets already registered in ``run``
        identically are skipped with their records, so a repeated or interrupted
        registration is completed by running it again. Returns the number newly
        registered. See :class:`DatasetColumns` for the columns.

        Raises
        ------
        DatasetConflictError
            If an id is registered differently (another type, RUN or data ID), or a data
            ID is held by another dataset of the same type in ``run``.
        DimensionValueError
            If a data ID's dimension records do not exist.
        """
        with self.transaction() as conn:
            rec = self.collections.require_type(
                conn, run, CollectionType.RUN, action="import datasets into"
            )
            n = import_dataset_columns(conn, self.schema, self.datasets, run, rec.id, batches)
        self._maybe_analyze(n, ["dataset"])
        return n

    def remove_datasets(self, refs: Iterable[DatasetRef]) -> None:
        """Delete datasets (and their tags, calibrations and datastore records)."""
        ids = [r.id for r in refs]
        with self.transaction() as conn:
            self.datasets.delete(conn, ids)

    def get_dataset(self, id: uuid.UUID | str) -> DatasetRef:
        """The ref of dataset ``id`` (DatasetNotFoundError if absent)."""
        did = id if isinstance(id, uuid.UUID) else uuid.UUID(str(id))
        with self._db.read() as conn:
            found = self.datasets.locate(conn, did)
            if found is None:
                raise DatasetNotFoundError(f"no dataset with id {did} in the registry")
            stored, data_id, run_id = found
            run = self.collections.by_id(conn, run_id).name
        return DatasetRef(stored.dataset_type, data_id, run, did)

    def associate(self, collection: str, refs: Iterable[DatasetRef]) -> None:
        """Add existing datasets to TAGGED ``collection`` (one per type + data ID)."""
        by_type = _group_by_type(refs)
        with self.transaction() as conn:
            rec = self.collections.require_type(
                conn, collection, CollectionType.TAGGED, action="tag datasets into"
            )
            for name, group in by_type.items():
                self.datasets.tag(conn, self.datasets.get(conn, name), rec.id, group)

    def disassociate(self, collection: str, refs: Iterable[DatasetRef]) -> None:
        """Remove datasets from TAGGED ``collection``."""
        by_type = _group_by_type(refs)
        with self.transaction() as conn:
            rec = self.collections.require_type(
                conn, collection, CollectionType.TAGGED, action="untag datasets from"
            )
            for name, group in by_type.items():
                stored = self.datasets.get(conn, name)
                self.datasets.untag(conn, stored, rec.id, [r.id for r in group])

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
                self.calibrations.certify(conn, stored, rec.id, group, timespan)

    def calibration_validity(
        self, collection: str, dataset_type: str | DatasetType
    ) -> list[tuple[uuid.UUID, Timespan]]:
        """Every (dataset id, validity range) of ``dataset_type`` in CALIBRATION ``collection``."""
        with self._db.read() as conn:
            rec = self.collections.require_type(
                conn, collection, CollectionType.CALIBRATION, action="read validity ranges of"
            )
            stored = self.datasets.get(conn, dataset_type)
            rows = self.calibrations.calib_rows(conn, stored, [rec.id], None)
            from_db = backend(conn).uuid_from_db()
        return [
            (from_db(r["dataset_id"]), Timespan(r["valid_begin"], r["valid_end"])) for r in rows
        ]

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
            ids = (
                None
                if data_ids is None
                else _data_ids(self.universe, stored.dataset_type.dimensions, data_ids)
            )
            return self.calibrations.decertify(conn, stored, rec.id, timespan, ids)

    # --- dataset searches (``_search.py``) ---------------------------------------------

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
        refs = self._search.search(dataset_type, collections, data_ids, where, bind, timespan, True)
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
        return self._search.search(dataset_type, collections, None, where, bind, None, find_first)

    def query_dataset_columns(
        self,
        dataset_type: str | DatasetType,
        collections: CollectionArg,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        find_first: bool = True,
    ) -> DatasetColumnsFound:
        """:meth:`query_datasets` as columns: RUN names, ids as hex, data ID tuples.

        For callers that pass results on rather than use them (the butler server): no
        ref, data ID or UUID object is built per dataset.
        """
        return self._search.search_columns(dataset_type, collections, where, bind, find_first)

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
        return self._search.find_dataset(dataset_type, data_id, collections, timespan)

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
        return self._search.find_calibrations(dataset_type, collections, data_ids_and_times)

    # --- data ID and record queries (``_data_id_queries.py``) --------------------------

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
        return self._data_ids.data_id_rows(dimensions, where, bind, datasets, collections)

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
        return self._data_ids.data_ids(list(dimensions), where, bind, datasets, collections, full)

    def query_dimension_records(
        self, element: str, where: str = "", bind: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Records of ``element`` matching ``where`` (regions and timespans decoded)."""
        return self._data_ids.dimension_records(element, where, bind)

    def query_record_keys(
        self, element: str, columns: Sequence[str], **equal: Any
    ) -> set[tuple[Any, ...]]:
        """Distinct values of ``columns`` among the records of ``element`` with ``equal`` values.

        E.g. ``query_record_keys("patch", ["tract"], skymap="hsc_rings_v1")``: the tracts
        that have patches (one indexed query, no record is decoded).
        """
        return self._data_ids.key_values(element, columns, equal)

    def query_overlaps(
        self, element: str, other: str, columns: Sequence[str]
    ) -> set[tuple[Any, ...]]:
        """Distinct ``columns`` of the materialized overlaps of ``element`` and ``other``.

        E.g. ``query_overlaps("visit_detector_region", "patch", ["skymap", "tract", "patch"])``:
        every patch some detector of some visit covers. DimensionError when the universe
        materializes no overlap between the two.
        """
        return self._data_ids.overlap_keys(element, other, columns)

    def count_dimension_records(self, element: str) -> int:
        """The number of records of ``element``."""
        return self._data_ids.count_records(element)

    # --- datastore records (``_datastore_records.py``) ---------------------------------

    def insert_datastore_records(self, records: Sequence[DatastoreRecord]) -> None:
        """Store where datasets' files are (inside :meth:`transaction`: with the datasets)."""
        with self.transaction() as conn:
            self.datastore_records.insert(conn, records)

    def get_datastore_records(
        self, refs: Iterable[DatasetRef | uuid.UUID]
    ) -> dict[uuid.UUID, DatastoreRecord]:
        """The datastore records of datasets (refs or ids) that have one.

        Refs of a RUN asked for by the thousand (exports, transfers) are read with one
        query per RUN instead of lists of ids.
        """
        ids: list[uuid.UUID] = []
        by_run: dict[str, list[uuid.UUID]] = {}
        for r in refs:
            if isinstance(r, uuid.UUID):
                ids.append(r)
            else:
                by_run.setdefault(r.run, []).append(r.id)
        with self._db.read() as conn:
            out: dict[uuid.UUID, DatastoreRecord] = {}
            for run, run_ids in by_run.items():
                if len(run_ids) < BULK_RUN_READ:
                    ids += run_ids
                    continue
                run_id = self.collections.get(conn, run).id
                out.update(self.datastore_records.fetch_run(conn, run_id, run_ids))
            out.update(self.datastore_records.fetch(conn, ids))
            return out

    def datastore_paths_in_use(self, paths: Sequence[str]) -> set[str]:
        """Which of the root-relative ``paths`` a datastore record names.

        Crash repair asks before deleting a file a killed removal listed: a file some
        dataset (re)uses since is kept. Reads the whole record table (no index on path).
        """
        with self._db.read() as conn:
            return self.datastore_records.paths_in_use(conn, paths)

    def all_datastore_paths(self) -> set[str]:
        """Every path the datastore records name (``rc2 fsck`` compares them to the disk)."""
        with self._db.read() as conn:
            return self.datastore_records.all_paths(conn)

    def query_datastore_record_columns(
        self, ids: Sequence[str]
    ) -> dict[str, tuple[str, str, str, int | None]]:
        """Datastore records of datasets given as UUID texts, without an object per row.

        Returns id (32 lower-case hex digits) -> ``(path, formatter, storage_class,
        file_size)`` for the datasets that have a record; one query whatever the number
        of ids on SQLite and PostgreSQL (exports and transfers read 50,000 at a time).
        """
        from rc2_platform.registry._dataset_columns import hex_ids

        if not ids:
            return {}
        with self._db.read() as conn:
            rows = backend(conn).select_by_uuid_text(
                conn,
                self.schema.file_datastore_records,
                "dataset_id",
                hex_ids(ids),
                ("path", "formatter", "storage_class", "file_size"),
            )
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def _group_by_type(refs: Iterable[DatasetRef]) -> dict[str, list[DatasetRef]]:
    out: dict[str, list[DatasetRef]] = {}
    for r in refs:
        out.setdefault(r.dataset_type.name, []).append(r)
    return out
