"""Dataset types and datasets: registration, batched inserts, tags, removal.

Data-ID checks and conflict explanations are in ``_dataset_checks.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import DatasetRef, DatasetType
from rc2_platform.core.names import check_dataset_type_name
from rc2_platform.errors import (
    ConflictingDefinitionError,
    DatasetConflictError,
    MissingDatasetTypeError,
)
from rc2_platform.registry._bulk import chunks
from rc2_platform.registry._dataset_checks import DatasetChecks
from rc2_platform.registry._dialect import backend, insert_rows, savepoint
from rc2_platform.registry.schema import RegistrySchema

#: Python types a binary COPY takes as data ID values as they are.
_EXACT = (int, str)


@dataclass(frozen=True, slots=True)
class StoredDatasetType:
    """A registered dataset type with its ids and membership tables."""

    dataset_type: DatasetType
    id: int
    tags: sa.Table
    calibs: sa.Table


class DatasetManager:
    """Register dataset types; insert, tag, certify and remove datasets."""

    def __init__(self, schema: RegistrySchema):
        self.schema = schema
        self.universe = schema.universe
        #: Data-ID checks and the explanation of constraint violations.
        self.checks = DatasetChecks(schema)
        self._types: dict[str, StoredDatasetType] = {}
        self._types_by_id: dict[int, StoredDatasetType] = {}
        self._loaded_all = False
        self._summary: set[tuple[int, int]] = set()
        #: Bumped whenever a collection summary row is added (cached search paths expire).
        self.summary_generation = 0

    def clear_cache(self) -> None:
        """Forget cached dataset types and collection summaries."""
        self._types.clear()
        self._types_by_id.clear()
        self._loaded_all = False
        self._summary.clear()
        self.summary_generation += 1

    # --- dataset types ----------------------------------------------------------------

    def _load(self, conn: sa.Connection, where: Any) -> list[StoredDatasetType]:
        dt, grp = self.schema.dataset_type, self.schema.dataset_group
        stmt = sa.select(dt, grp.c.dimensions.label("group_dims")).join(
            grp, dt.c.group_id == grp.c.group_id
        )
        out = []
        for row in conn.execute(stmt.where(where)):
            dims = tuple(row.dimensions.split(",")) if row.dimensions else ()
            tags, calibs = self.schema.group_tables(row.group_id, dims)
            stored = StoredDatasetType(
                DatasetType(row.name, dims, row.storage_class, bool(row.is_calibration)),
                row.dataset_type_id,
                tags,
                calibs,
            )
            self._types[row.name] = stored
            self._types_by_id[row.dataset_type_id] = stored
            out.append(stored)
        return out

    def get(self, conn: sa.Connection, name: str | DatasetType) -> StoredDatasetType:
        """A registered dataset type (MissingDatasetTypeError if not registered).

        The first miss loads every registered type in one query (a registration of a
        pipeline's outputs asks for a few dozen in turn), then, if still missing, the
        name itself (the database's own comparison, e.g. a case-insensitive collation).
        """
        key = name.name if isinstance(name, DatasetType) else name
        stored = self._types.get(key)
        if stored is None:
            # A NUL cannot be stored (PostgreSQL refuses it in a query): not registered.
            if "\x00" not in key and not self._loaded_all:
                self._load(conn, sa.true())
                self._loaded_all = True
                stored = self._types.get(key)
                if stored is not None:
                    return stored
            where = sa.false() if "\x00" in key else self.schema.dataset_type.c.name == key
            found = self._load(conn, where)
            if not found:
                raise MissingDatasetTypeError(
                    f"dataset type {key!r} is not registered; `rc2 dataset-types REPO` lists "
                    "the registered ones (`rc2 register-dataset-type` adds one)"
                )
            stored = found[0]
        return stored

    def by_id(self, conn: sa.Connection, type_id: int) -> StoredDatasetType:
        """A registered dataset type by primary key."""
        if type_id not in self._types_by_id:
            self._load(conn, self.schema.dataset_type.c.dataset_type_id == type_id)
        return self._types_by_id[type_id]

    def normalize(self, dataset_type: DatasetType) -> DatasetType:
        """The dataset type with its dimensions made required-only, canonical order."""
        check_dataset_type_name(dataset_type.name)
        dims = self.universe.required(dataset_type.dimensions)
        return DatasetType(
            dataset_type.name, dims, dataset_type.storage_class, dataset_type.is_calibration
        )

    def register(self, conn: sa.Connection, dataset_type: DatasetType) -> bool:
        """Register a dataset type; False if identical, ConflictingDefinitionError if different."""
        dataset_type = self.normalize(dataset_type)
        try:
            existing = self.get(conn, dataset_type.name).dataset_type
        except MissingDatasetTypeError:
            existing = None
        if existing is not None:
            if not existing.same_definition(dataset_type):
                raise ConflictingDefinitionError(
                    f"dataset type {dataset_type.name!r} is registered with dimensions "
                    f"{list(existing.dimensions)}, storage class {existing.storage_class!r}, "
                    f"calibration={existing.is_calibration}; cannot redefine it as "
                    f"{list(dataset_type.dimensions)}, {dataset_type.storage_class!r}, "
                    f"calibration={dataset_type.is_calibration}"
                )
            return False
        group_id = self._group_id(conn, dataset_type.dimensions)
        dt = self.schema.dataset_type
        conn.execute(
            dt.insert().values(
                name=dataset_type.name,
                dimensions=",".join(dataset_type.dimensions),
                storage_class=dataset_type.storage_class,
                is_calibration=dataset_type.is_calibration,
                group_id=group_id,
            )
        )
        self.get(conn, dataset_type.name)
        return True

    def _group_id(self, conn: sa.Connection, dims: tuple[str, ...]) -> int:
        grp = self.schema.dataset_group
        text = ",".join(dims)
        gid = conn.execute(sa.select(grp.c.group_id).where(grp.c.dimensions == text)).scalar()
        if gid is None:
            conn.execute(grp.insert().values(dimensions=text))
            gid = conn.execute(
                sa.select(grp.c.group_id).where(grp.c.dimensions == text)
            ).scalar_one()
            tags, calibs = self.schema.group_tables(gid, dims)
            tags.create(conn, checkfirst=True)
            calibs.create(conn, checkfirst=True)
        return int(gid)

    def query_types(self, conn: sa.Connection) -> list[DatasetType]:
        """Every registered dataset type, sorted by name."""
        return sorted((s.dataset_type for s in self._load(conn, sa.true())), key=lambda d: d.name)

    # --- summaries --------------------------------------------------------------------

    def note_summary(self, conn: sa.Connection, collection_id: int, type_id: int) -> None:
        """Record that ``collection_id`` may hold datasets of ``type_id``."""
        self.note_summaries(conn, collection_id, [type_id])

    def note_summaries(
        self, conn: sa.Connection, collection_id: int, type_ids: Iterable[int]
    ) -> None:
        """Record that ``collection_id`` may hold datasets of each of ``type_ids``.

        One query for the pairs not yet known to this process and one insert of the
        missing ones (not two statements per dataset type).
        """
        wanted = sorted({t for t in type_ids if (collection_id, t) not in self._summary})
        if not wanted:
            return
        t = self.schema.collection_summary
        have = set(
            conn.execute(
                sa.select(t.c.dataset_type_id).where(
                    t.c.collection_id == collection_id, t.c.dataset_type_id.in_(wanted)
                )
            ).scalars()
        )
        missing = [type_id for type_id in wanted if type_id not in have]
        if missing:
            conn.execute(
                t.insert(),
                [{"collection_id": collection_id, "dataset_type_id": i} for i in missing],
            )
            self.summary_generation += 1
        self._summary.update((collection_id, type_id) for type_id in wanted)

    def remove_tagged(self, conn: sa.Connection, collection_id: int) -> None:
        """Delete the tags rows of TAGGED ``collection_id`` (before removing it)."""
        t = self.schema.collection_summary
        type_ids = conn.execute(
            sa.select(t.c.dataset_type_id).where(t.c.collection_id == collection_id)
        ).scalars()
        for type_id in list(type_ids):
            tags = self.by_id(conn, type_id).tags
            conn.execute(
                tags.delete().where(
                    tags.c.dataset_type_id == type_id, tags.c.collection_id == collection_id
                )
            )

    def collections_with(
        self, conn: sa.Connection, type_id: int, collection_ids: Sequence[int]
    ) -> set[int]:
        """The subset of ``collection_ids`` whose summary lists ``type_id``."""
        t = self.schema.collection_summary
        rows = conn.execute(
            sa.select(t.c.collection_id).where(
                t.c.dataset_type_id == type_id, t.c.collection_id.in_(list(collection_ids))
            )
        ).scalars()
        return set(rows)

    # --- inserts ----------------------------------------------------------------------

    def insert_refs(
        self,
        conn: sa.Connection,
        stored: StoredDatasetType,
        refs: Sequence[DatasetRef],
        run_id: int,
        idempotent: bool,
        checked: bool = False,
    ) -> list[DatasetRef]:
        """Insert refs (one run) into ``dataset`` and the tags table; return the new ones.

        Data IDs are validated set-wise first (:meth:`DatasetChecks.check_data_ids`) unless
        ``checked`` says the caller already did.
        """
        fresh_run = idempotent and self._run_lacks_type(conn, stored, run_id)
        if idempotent and not fresh_run:
            refs = self.checks.drop_identical(conn, stored, refs, run_id)
        if not refs:
            return []
        if not checked:
            self.checks.check_data_ids(conn, stored, [r.data_id.values_tuple for r in refs])
        to_db = backend(conn).uuid_to_db()
        type_id = stored.id
        ids = [to_db(r.id) for r in refs]
        ds_rows = [(i, type_id, run_id) for i in ids]
        tag_rows = [
            (type_id, run_id, i, *r.data_id.values_tuple) for i, r in zip(ids, refs, strict=True)
        ]
        # Imported refs may carry values of other int types (text COPY converts them);
        # data IDs of plain ints and strings (exports, other registries) go binary.
        binary = all(type(v) in _EXACT for r in refs for v in r.data_id.values_tuple)
        try:
            self.write_rows(conn, stored, run_id, ds_rows, tag_rows, refs, binary=binary)
        except DatasetConflictError:
            if fresh_run:  # name the UUID that exists in another RUN or type, if that is it
                self.checks.drop_identical(conn, stored, refs, run_id)
            raise
        return list(refs)

    def _run_lacks_type(self, conn: sa.Connection, stored: StoredDatasetType, run_id: int) -> bool:
        """Whether RUN ``run_id`` holds no dataset of ``stored`` (one indexed probe).

        Such a RUN cannot hold a ref identical to an imported one, so an idempotent
        import needs no per-UUID lookup (a UUID used by another type or RUN still fails
        on the primary key).
        """
        d = self.schema.dataset
        probe = (
            sa.select(d.c.dataset_id)
            .where(d.c.run_id == run_id, d.c.dataset_type_id == stored.id)
            .limit(1)
        )
        return conn.execute(probe).first() is None

    def write_rows(
        self,
        conn: sa.Connection,
        stored: StoredDatasetType,
        run_id: int,
        ds_rows: Sequence[tuple[Any, ...]],
        tag_rows: Sequence[tuple[Any, ...]],
        refs: Sequence[DatasetRef],
        binary: bool = True,
    ) -> None:
        """Bulk-write driver-ready ``dataset`` and tags rows; explain constraint failures.

        ``binary`` (PostgreSQL binary COPY) needs data ID values of exactly ``int`` /
        ``str`` type, as :meth:`Registry.insert_datasets` normalises them.
        """
        dims = stored.dataset_type.dimensions
        tag_cols = ["dataset_type_id", "collection_id", "dataset_id", *dims]
        try:
            with savepoint(conn):
                insert_rows(
                    conn,
                    self.schema.dataset,
                    ["dataset_id", "dataset_type_id", "run_id"],
                    ds_rows,
                    binary=binary,
                )
                insert_rows(conn, stored.tags, tag_cols, tag_rows, binary=binary)
        except sa.exc.IntegrityError as exc:
            self.checks.explain_integrity_error(conn, stored, refs, run_id, exc)
        self.note_summary(conn, run_id, stored.id)

    # --- tags, lookups by id and removal ------------------------------------------------

    def tag(
        self,
        conn: sa.Connection,
        stored: StoredDatasetType,
        collection_id: int,
        refs: Sequence[DatasetRef],
    ) -> None:
        """Add existing datasets of ``stored`` to TAGGED ``collection_id`` (already tagged: kept)."""
        t = stored.tags
        dims = stored.dataset_type.dimensions
        existing: set[Any] = set()
        for part in chunks([r.id for r in refs]):
            existing.update(
                conn.execute(
                    sa.select(t.c.dataset_id).where(
                        t.c.collection_id == collection_id, t.c.dataset_id.in_(part)
                    )
                ).scalars()
            )
        rows = [
            dict(
                zip(dims, r.data_id.subset(dims).values_tuple, strict=True),
                dataset_id=r.id,
                dataset_type_id=stored.id,
                collection_id=collection_id,
            )
            for r in refs
            if r.id not in existing
        ]
        if rows:
            self.checks.check_data_ids(conn, stored, [tuple(r[x] for x in dims) for r in rows])
            try:
                with savepoint(conn):
                    conn.execute(t.insert(), rows)
            except sa.exc.IntegrityError as exc:
                self.checks.explain_integrity_error(conn, stored, refs, collection_id, exc)
        self.note_summary(conn, collection_id, stored.id)

    def untag(
        self,
        conn: sa.Connection,
        stored: StoredDatasetType,
        collection_id: int,
        ids: Sequence[uuid.UUID],
    ) -> None:
        """Remove datasets from TAGGED ``collection_id``."""
        t = stored.tags
        for part in chunks(list(ids)):
            conn.execute(
                t.delete().where(t.c.collection_id == collection_id, t.c.dataset_id.in_(part))
            )

    def locate(
        self, conn: sa.Connection, dataset_id: uuid.UUID
    ) -> tuple[StoredDatasetType, DataCoordinate, int] | None:
        """Dataset type, data ID and run id of one dataset (None if it does not exist)."""
        d = self.schema.dataset
        row = conn.execute(sa.select(d).where(d.c.dataset_id == dataset_id)).first()
        if row is None:
            return None
        stored = self.by_id(conn, row.dataset_type_id)
        t = stored.tags
        dims = stored.dataset_type.dimensions
        vals = conn.execute(
            sa.select(*[t.c[x] for x in dims]).where(
                t.c.dataset_id == dataset_id, t.c.collection_id == row.run_id
            )
        ).one()
        return stored, DataCoordinate(dims, tuple(vals)), int(row.run_id)

    def delete(self, conn: sa.Connection, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Delete datasets with their tags rows and datastore records (calibrations cascade).

        ``tags_<n>`` and ``file_datastore_records`` hold no foreign key to ``dataset``
        (schema 1.2): their rows are deleted here, from the tags table of each type found.

        Returns the ids this transaction deleted. The rows are locked first (``SELECT
        ... FOR UPDATE``; SQLite's write transaction holds the database's write lock from
        its start): a concurrent removal of the same datasets waits for this one and then
        finds them gone, so each deletes (and reports) only what it removed.
        """
        d, records = self.schema.dataset, self.schema.file_datastore_records
        deleted: set[uuid.UUID] = set()
        for part in chunks(list(ids)):
            present = conn.execute(
                sa.select(d.c.dataset_id, d.c.dataset_type_id)
                .where(d.c.dataset_id.in_(part))
                .with_for_update()
            ).all()
            mine = [row.dataset_id for row in present]
            if not mine:
                continue
            for type_id in sorted({row.dataset_type_id for row in present}):
                tags = self.by_id(conn, type_id).tags
                conn.execute(tags.delete().where(tags.c.dataset_id.in_(mine)))
            conn.execute(records.delete().where(records.c.dataset_id.in_(mine)))
            conn.execute(d.delete().where(d.c.dataset_id.in_(mine)))
            deleted.update(mine)
        return deleted

    def delete_where(self, conn: sa.Connection, *where: Any) -> None:
        """Delete the datasets matching ``where`` (on ``dataset``'s columns), as :meth:`delete`.

        One statement per table (``dataset_id IN (SELECT ...)``): removal of a RUN or of
        a dataset type's datasets, whatever their number.
        """
        d, records = self.schema.dataset, self.schema.file_datastore_records
        type_ids = conn.execute(sa.select(d.c.dataset_type_id).where(*where).distinct()).scalars()
        for type_id in list(type_ids):
            tags = self.by_id(conn, type_id).tags
            chosen = sa.select(d.c.dataset_id).where(*where, d.c.dataset_type_id == type_id)
            conn.execute(tags.delete().where(tags.c.dataset_id.in_(chosen)))
        conn.execute(
            records.delete().where(
                records.c.dataset_id.in_(sa.select(d.c.dataset_id).where(*where))
            )
        )
        conn.execute(d.delete().where(*where))
