"""Datastore records: where each dataset's file is (``file_datastore_records``).

The datastore decides paths and writes files; the registry stores its records in the
same transaction as the dataset rows, so both commit or roll back together. Rows go
to the database at driver level (COPY on PostgreSQL) because execution registers a
job's outputs in one call.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from rc2_platform.core.datastore_record import DatastoreRecord
from rc2_platform.registry._bulk import CHUNK, chunks, select_raw
from rc2_platform.registry._dialect import backend, insert_rows
from rc2_platform.registry.schema import RegistrySchema

_COLUMNS = ("dataset_id", "path", "storage_class", "formatter", "file_size")


class DatastoreRecordManager:
    """Insert, read and delete the file records of datasets."""

    def __init__(self, schema: RegistrySchema):
        self.schema = schema
        self.table = schema.file_datastore_records

    def insert(self, conn: sa.Connection, records: Sequence[DatastoreRecord]) -> None:
        """Insert records of datasets that exist and have none yet (IntegrityError otherwise)."""
        if not records:
            return
        ids = backend(conn).uuids_to_db([r.dataset_id for r in records])
        rows = [
            (i, r.path, r.storage_class, r.formatter, r.file_size)
            for i, r in zip(ids, records, strict=True)
        ]
        exact = all(type(r.path) is str and type(r.file_size) in (int, type(None)) for r in records)
        insert_rows(conn, self.table, _COLUMNS, rows, binary=exact)

    def fetch(
        self, conn: sa.Connection, ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, DatastoreRecord]:
        """The records of datasets ``ids`` that have one (one raw query per 5,000 ids)."""
        t = self.table
        be = backend(conn)
        from_db = be.uuid_from_db()
        cols = (t.c.dataset_id, t.c.path, t.c.formatter, t.c.storage_class, t.c.file_size)
        out: dict[uuid.UUID, DatastoreRecord] = {}
        ids = list(ids)
        db_ids = be.uuids_to_db(ids)
        known = dict(zip(db_ids, ids, strict=True))
        for part in chunks(db_ids):
            stmt = sa.select(*cols).where(t.c.dataset_id.in_(list(part)))
            for raw_id, path, formatter, storage_class, size in select_raw(conn, stmt):
                did = known.get(raw_id) or from_db(raw_id)
                out[did] = DatastoreRecord(did, path, formatter, storage_class, size or 0)
        return out

    def fetch_run(
        self, conn: sa.Connection, run_id: int, ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, DatastoreRecord]:
        """The records of datasets ``ids`` of RUN ``run_id``: one query over the whole RUN."""
        t, d = self.table, self.schema.dataset
        stmt = (
            sa.select(t.c.dataset_id, t.c.path, t.c.formatter, t.c.storage_class, t.c.file_size)
            .join(d, d.c.dataset_id == t.c.dataset_id)
            .where(d.c.run_id == run_id)
        )
        rows = {row[0]: row for row in select_raw(conn, stmt)}
        out: dict[uuid.UUID, DatastoreRecord] = {}
        for did, raw_id in zip(ids, backend(conn).uuids_to_db(ids), strict=True):
            row = rows.get(raw_id)
            if row is not None:
                out[did] = DatastoreRecord(did, row[1], row[2], row[3], row[4] or 0)
        return out

    def paths_in_use(self, conn: sa.Connection, paths: Sequence[str]) -> set[str]:
        """Which of ``paths`` a record names (no index on path: one scan of the table).

        Up to 5,000 paths: one ``IN`` query; more: every path read once and intersected
        (one scan instead of one per 5,000).
        """
        t = self.table
        wanted = list(dict.fromkeys(paths))
        if len(wanted) > CHUNK:
            return self.all_paths(conn).intersection(wanted)
        out: set[str] = set()
        for part in chunks(wanted):
            out.update(conn.execute(sa.select(t.c.path).where(t.c.path.in_(part))).scalars())
        return out

    def all_paths(self, conn: sa.Connection) -> set[str]:
        """Every path a record names."""
        return set(conn.execute(sa.select(self.table.c.path)).scalars())

    def all_sizes(self, conn: sa.Connection) -> dict[str, int | None]:
        """Every path a record names -> its recorded size (None: unknown, or records of
        one path that disagree)."""
        sizes: dict[str, int | None] = {}
        for path, size in conn.execute(sa.select(self.table.c.path, self.table.c.file_size)):
            sizes[path] = size if sizes.get(path, size) == size else None
        return sizes

    def delete(self, conn: sa.Connection, ids: Iterable[uuid.UUID]) -> None:
        """Delete the records of datasets ``ids`` (the datasets stay registered)."""
        t = self.table
        for part in chunks(list(ids)):
            conn.execute(t.delete().where(t.c.dataset_id.in_(part)))
