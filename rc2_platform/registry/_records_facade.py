"""Registry methods of records: dimension records and datastore records.

:class:`RegistryRecords` is a base class of :class:`~rc2_platform.registry.Registry`
(kept apart so the facade module stays small): inserting dimension records (their SQL in
``_records.py`` and ``_bulkload.py``) and storing and reading where datasets' files are
(``_datastore_records.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rc2_platform.core.dataset_types import DatasetRef
from rc2_platform.core.datastore_record import DatastoreRecord
from rc2_platform.registry._bulkload import insert_column_chunks
from rc2_platform.registry._dialect import backend

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    import sqlalchemy as sa

    from rc2_platform.registry._collections import CollectionManager
    from rc2_platform.registry._connections import Connections
    from rc2_platform.registry._datastore_records import DatastoreRecordManager
    from rc2_platform.registry._records import RecordManager
    from rc2_platform.registry.schema import RegistrySchema

#: Datastore records of at least this many refs of one RUN are read per RUN, not by id.
BULK_RUN_READ = 2_000


class RegistryRecords:
    """Dimension and datastore records of the registry (mixed into ``Registry``)."""

    if TYPE_CHECKING:
        schema: RegistrySchema
        records: RecordManager
        collections: CollectionManager
        datastore_records: DatastoreRecordManager
        _db: Connections

        def transaction(self) -> AbstractContextManager[sa.Connection]: ...
        def _maybe_analyze(self, count: int, tables: Iterable[str]) -> None: ...

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

    def datastore_file_sizes(self) -> dict[str, int | None]:
        """Every path the datastore records name -> its recorded size in bytes (None when
        unknown); ``rc2 fsck`` compares both with the disk."""
        with self._db.read() as conn:
            return self.datastore_records.all_sizes(conn)

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
