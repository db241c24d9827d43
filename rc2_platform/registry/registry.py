"""The registry facade: what exists, with which data ID, in which collection.

:class:`Registry` is the one entry point of the registry layer. This module holds its
lifecycle, planner statistics and dataset writes; its other methods come from base
classes, one module per purpose (``_collections_facade.py``, ``_records_facade.py``,
``_query_facade.py``, ``_admin.py``). The work is done by the managers beside it (every
SQL statement of rc2_platform lives in this package):

- ``_connections.py``: the shared transaction and the kept lookup connections;
- ``_records.py`` / ``_bulkload.py``: dimension records and their spatial overlaps;
- ``_collections.py``, ``_datasets.py``, ``_calibrations.py``: collections, dataset
  types and datasets, validity ranges;
- ``_datastore_records.py``: where each dataset's file is;
- ``_search.py``: find-first dataset search; ``_data_id_queries.py``: data IDs and records;
- ``_queries.py``: joins and where-expressions; ``_dialect.py``: every backend difference.
"""

from __future__ import annotations

import itertools
import logging
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
    MigrationRequiredError,
    SchemaVersionError,
)
from rc2_platform.registry._admin import RegistryAdmin
from rc2_platform.registry._bulk import no_gc, time_ordered_uuids
from rc2_platform.registry._calibrations import CalibrationManager
from rc2_platform.registry._collections import CollectionManager
from rc2_platform.registry._collections_facade import RegistryCollections
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
from rc2_platform.registry._query_facade import RegistryQueries
from rc2_platform.registry._records import RecordManager
from rc2_platform.registry._records_facade import RegistryRecords
from rc2_platform.registry._search import CollectionArg, DatasetSearch
from rc2_platform.registry.dimensions import DimensionUniverse
from rc2_platform.registry.schema import SCHEMA_VERSION, RegistrySchema

_log = logging.getLogger(__name__)

#: Inserts of at least this many rows refresh planner statistics afterwards.
ANALYZE_THRESHOLD = 10_000

#: A table is stale when more than this fraction of its rows changed since its last ANALYZE.
STALE_FRACTION = 0.2

__all__ = ["ANALYZE_THRESHOLD", "CollectionArg", "DatasetColumns", "Registry"]


class Registry(RegistryCollections, RegistryRecords, RegistryQueries, RegistryAdmin):
    """A registry database. Build with :meth:`create` or :meth:`open`.

    Every public method runs in its own transaction unless called inside
    :meth:`transaction`, in which case all work shares that one transaction. The
    data-management methods (users of a collection, chain edits, dataset-type removal,
    certifications) come from :class:`~rc2_platform.registry._admin.RegistryAdmin`; the
    collections and dataset types from ``_collections_facade.py``, the dimension and
    datastore records from ``_records_facade.py``, the dataset searches and data-ID
    queries from ``_query_facade.py`` (base classes, one purpose each).
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
        """ANALYZE ``tables`` after a write of ``count`` >= :data:`ANALYZE_THRESHOLD` rows.

        On a database server it runs on its own connection beside the caller (the
        registration of a tract's outputs does not wait ~0.07 s for it; :meth:`close`
        does); SQLite's is a few milliseconds and takes the write lock, so it runs inline.
        """
        if count >= ANALYZE_THRESHOLD and self._db.current is None:
            names = list(tables)
            if backend(self.engine).analyzes_beside_writers:
                self._db.beside("analyze", lambda: self.analyze(names))
            else:
                self.analyze(names)

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
            self.datasets.checks.check_data_ids(conn, stored, keys)
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

    def remove_datasets(self, refs: Iterable[DatasetRef]) -> list[DatasetRef]:
        """Delete datasets (and their tags, calibrations and datastore records).

        Returns the refs this call's transaction deleted, in the order given: a dataset
        already gone (removed before, or by a concurrent removal that committed first,
        which this one waits for) is not among them.
        """
        refs = list(refs)
        with self.transaction() as conn:
            deleted = self.datasets.delete(conn, [r.id for r in refs])
        return [r for r in refs if r.id in deleted]

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


def _group_by_type(refs: Iterable[DatasetRef]) -> dict[str, list[DatasetRef]]:
    out: dict[str, list[DatasetRef]] = {}
    for r in refs:
        out.setdefault(r.dataset_type.name, []).append(r)
    return out
