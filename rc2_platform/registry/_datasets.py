"""Dataset types and datasets: registration, batched inserts, tags and calibrations."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import DatasetRef, DatasetType
from rc2_platform.core.timespan import Timespan
from rc2_platform.errors import (
    CalibrationConflictError,
    ConflictingDefinitionError,
    DatasetConflictError,
    DatasetTypeError,
    DimensionValueError,
    MissingDatasetTypeError,
)
from rc2_platform.registry._bulk import insert_rows, select_raw, uuid_to_db
from rc2_platform.registry._records import chunks
from rc2_platform.registry.schema import RegistrySchema


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
        self._types: dict[str, StoredDatasetType] = {}
        self._types_by_id: dict[int, StoredDatasetType] = {}
        self._summary: set[tuple[int, int]] = set()
        #: Bumped whenever a collection summary row is added (cached search paths expire).
        self.summary_generation = 0

    def clear_cache(self) -> None:
        """Forget cached dataset types and collection summaries."""
        self._types.clear()
        self._types_by_id.clear()
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
        """A registered dataset type (MissingDatasetTypeError if not registered)."""
        key = name.name if isinstance(name, DatasetType) else name
        stored = self._types.get(key)
        if stored is None:
            found = self._load(conn, self.schema.dataset_type.c.name == key)
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
        if not dataset_type.name or len(dataset_type.name) > 128:
            raise DatasetTypeError(
                f"dataset type name {dataset_type.name!r} must have 1-128 characters"
            )
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
        if (collection_id, type_id) in self._summary:
            return
        t = self.schema.collection_summary
        exists = conn.execute(
            sa.select(t.c.collection_id).where(
                t.c.collection_id == collection_id, t.c.dataset_type_id == type_id
            )
        ).first()
        if exists is None:
            conn.execute(t.insert().values(collection_id=collection_id, dataset_type_id=type_id))
            self.summary_generation += 1
        self._summary.add((collection_id, type_id))

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

        Data IDs are validated set-wise first (:meth:`check_data_ids`) unless
        ``checked`` says the caller already did.
        """
        if idempotent:
            refs = self._drop_identical(conn, stored, refs, run_id)
        if not refs:
            return []
        if not checked:
            self.check_data_ids(conn, stored, [r.data_id.values_tuple for r in refs])
        to_db = uuid_to_db(conn.dialect)
        type_id = stored.id
        ids = [to_db(r.id) for r in refs]
        ds_rows = [(i, type_id, run_id) for i in ids]
        tag_rows = [
            (type_id, run_id, i, *r.data_id.values_tuple) for i, r in zip(ids, refs, strict=True)
        ]
        # Imported refs may carry values of other int types: text COPY converts them.
        self.write_rows(conn, stored, run_id, ds_rows, tag_rows, refs, binary=False)
        return list(refs)

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
            with conn.begin_nested() if conn.dialect.name == "postgresql" else _Null():
                insert_rows(
                    conn,
                    self.schema.dataset,
                    ["dataset_id", "dataset_type_id", "run_id"],
                    ds_rows,
                    binary=binary,
                )
                insert_rows(conn, stored.tags, tag_cols, tag_rows, binary=binary)
        except sa.exc.IntegrityError as exc:
            self.explain_integrity_error(conn, stored, refs, run_id, exc)
        self.note_summary(conn, run_id, stored.id)

    def check_data_ids(
        self, conn: sa.Connection, stored: StoredDatasetType, keys: Sequence[tuple[Any, ...]]
    ) -> None:
        """Raise DimensionValueError unless every data ID's dimension records exist.

        One query per referenced element over the batch's distinct values (what the
        dropped per-row foreign keys of the tags table used to check).
        """
        dims = stored.dataset_type.dimensions
        for name in self.schema.dimension_checks(dims):
            el = self.universe[name]
            idx = [dims.index(r) for r in el.required]
            wanted: set[tuple[Any, ...]]
            if len(idx) == 1:
                wanted = {(v,) for v in {k[idx[0]] for k in keys}}
            elif len(idx) == 2:
                i0, i1 = idx
                wanted = {(k[i0], k[i1]) for k in keys}
            else:
                wanted = {tuple(k[i] for i in idx) for k in keys}
            found = self._existing_keys(conn, name, wanted)
            missing = wanted - found
            if missing:
                shown = sorted(missing, key=repr)[:5]
                raise DimensionValueError(
                    f"{stored.dataset_type.name}: data ID value(s) "
                    f"{[dict(zip(el.required, m, strict=True)) for m in shown]} do not exist "
                    f"in the registry's {name} records; insert those dimension records first"
                )

    def _existing_keys(
        self, conn: sa.Connection, element: str, wanted: set[tuple[Any, ...]]
    ) -> set[tuple[Any, ...]]:
        el = self.universe[element]
        table = self.schema.elements[element]
        cols = [table.c[k] for k in el.required]
        found: set[tuple[Any, ...]] = set()
        last = sorted({k[-1] for k in wanted}, key=repr)
        for part in chunks(last, 10_000):
            stmt = sa.select(*cols).where(cols[-1].in_(part))
            if len(cols) > 1:
                stmt = stmt.where(*restrict_columns(cols[:-1], wanted, 100))
            found.update(tuple(row) for row in select_raw(conn, stmt))
        return found

    def _drop_identical(
        self,
        conn: sa.Connection,
        stored: StoredDatasetType,
        refs: Sequence[DatasetRef],
        run_id: int,
    ) -> list[DatasetRef]:
        """Refs whose UUID is not stored yet; stored ones must match exactly."""
        d = self.schema.dataset
        found: dict[uuid.UUID, tuple[int, int]] = {}
        for part in chunks([r.id for r in refs]):
            for row in conn.execute(
                sa.select(d.c.dataset_id, d.c.dataset_type_id, d.c.run_id).where(
                    d.c.dataset_id.in_(part)
                )
            ):
                found[row[0]] = (row[1], row[2])
        new = []
        for r in refs:
            old = found.get(r.id)
            if old is None:
                new.append(r)
            elif old != (stored.id, run_id):
                raise DatasetConflictError(
                    f"dataset {r.id} already exists with another dataset type or run than {r!r}"
                )
        if len(new) < len(refs):
            self._check_same_data_ids(conn, stored, [r for r in refs if r.id in found])
        return new

    def _check_same_data_ids(
        self, conn: sa.Connection, stored: StoredDatasetType, refs: list[DatasetRef]
    ) -> None:
        t = stored.tags
        dims = stored.dataset_type.dimensions
        want = {r.id: r for r in refs}
        for part in chunks(list(want)):
            stmt = sa.select(t.c.dataset_id, *[t.c[d] for d in dims]).where(
                t.c.dataset_id.in_(part)
            )
            for row in conn.execute(stmt):
                ref = want[row[0]]
                if tuple(row[1:]) != ref.data_id.values_tuple:
                    raise DatasetConflictError(
                        f"dataset {ref.id} already exists with data ID {dict(zip(dims, row[1:], strict=True))}, "
                        f"not {ref.data_id}"
                    )

    def explain_integrity_error(
        self,
        conn: sa.Connection,
        stored: StoredDatasetType,
        refs: Sequence[DatasetRef],
        collection_id: int,
        exc: Exception,
    ) -> None:
        """Turn a constraint violation into DimensionValueError or DatasetConflictError."""
        dims = stored.dataset_type.dimensions
        for d in dims:
            el = self.universe[d]
            if not el.has_table:
                continue
            table = self.schema.elements[d]
            keys = {tuple(r.data_id[k] for k in el.required) for r in refs}
            found: set[tuple[Any, ...]] = set()
            values = sorted({k[-1] for k in keys}, key=repr)
            for part in chunks(values):
                stmt = sa.select(*[table.c[k] for k in el.required]).where(table.c[d].in_(part))
                found.update(tuple(row) for row in conn.execute(stmt))
            missing = sorted(keys - found, key=repr)
            if missing:
                raise DimensionValueError(
                    f"{stored.dataset_type.name}: data ID value(s) "
                    f"{[dict(zip(el.required, m, strict=True)) for m in missing[:5]]} do not exist "
                    f"in the registry's {d} records; insert those dimension records first"
                ) from exc
        t = stored.tags
        clashes = []
        for part in chunks(list(refs), 500):
            cond = sa.tuple_(*[t.c[d] for d in dims]).in_([r.data_id.values_tuple for r in part])
            stmt = sa.select(*[t.c[d] for d in dims]).where(
                t.c.dataset_type_id == stored.id, t.c.collection_id == collection_id, cond
            )
            clashes += [dict(zip(dims, row, strict=True)) for row in conn.execute(stmt)]
        raise DatasetConflictError(
            f"{stored.dataset_type.name}: a dataset already exists in this collection for data ID(s) "
            f"{clashes[:5] if clashes else '(duplicate ids within the batch)'}; "
            "use another RUN or remove the existing datasets"
        ) from exc

    # --- calibrations -----------------------------------------------------------------

    def certify(
        self,
        conn: sa.Connection,
        stored: StoredDatasetType,
        collection_id: int,
        refs: Sequence[DatasetRef],
        timespan: Timespan,
    ) -> None:
        """Add refs to a CALIBRATION collection with validity ``timespan``."""
        dims = stored.dataset_type.dimensions
        incoming: dict[tuple[Any, ...], DatasetRef] = {}
        for r in refs:
            key = r.data_id.values_tuple
            if key in incoming:
                raise CalibrationConflictError(
                    f"{stored.dataset_type.name} {r.data_id}: two datasets certified with the same "
                    f"validity {timespan} in one call"
                )
            incoming[key] = r
        for row in self.calib_rows(conn, stored, [collection_id], list(incoming)):
            key = tuple(row[d] for d in dims)
            old = Timespan(row["valid_begin"], row["valid_end"])
            if old.overlaps(timespan):
                raise CalibrationConflictError(
                    f"{stored.dataset_type.name} {incoming[key].data_id}: validity {timespan} overlaps "
                    f"the existing validity {old} of dataset {row['dataset_id']}; "
                    "decertify the overlapping range first"
                )
        rows = []
        for key, r in incoming.items():
            row = dict(zip(dims, key, strict=True))
            row.update(
                dataset_type_id=stored.id,
                collection_id=collection_id,
                dataset_id=r.id,
                valid_begin=timespan.begin_nsec,
                valid_end=timespan.end_nsec,
            )
            rows.append(row)
        try:
            conn.execute(stored.calibs.insert(), rows)
        except sa.exc.IntegrityError as exc:
            raise DimensionValueError(
                f"cannot certify {stored.dataset_type.name}: a dataset or data ID does not exist ({exc.args[0]})"
            ) from exc
        self.note_summary(conn, collection_id, stored.id)

    def calib_rows(
        self,
        conn: sa.Connection,
        stored: StoredDatasetType,
        collection_ids: Sequence[int],
        keys: Sequence[tuple[Any, ...]] | None,
    ) -> list[dict[str, Any]]:
        """Calibration rows of ``stored`` in the collections, restricted to data ID ``keys``."""
        c = stored.calibs
        dims = stored.dataset_type.dimensions
        stmt = sa.select(c).where(
            c.c.dataset_type_id == stored.id, c.c.collection_id.in_(list(collection_ids))
        )
        if keys is not None:
            if not keys:
                return []
            stmt = stmt.where(*restrict_columns([c.c[d] for d in dims], keys))
        wanted = None if keys is None else set(keys)
        out = []
        for row in conn.execute(stmt).mappings():
            if wanted is None or tuple(row[d] for d in dims) in wanted:
                out.append(dict(row))
        return out

    def membership_rows(
        self,
        conn: sa.Connection,
        stored: StoredDatasetType,
        collections: Sequence[Any],
        keys: Sequence[tuple[Any, ...]],
    ) -> list[dict[str, Any]]:
        """Tag and calibration rows (with run_id and validity) for data ID ``keys``, one query."""
        dims = stored.dataset_type.dimensions
        d = self.schema.dataset
        parts = []
        tagged = [c.id for c in collections if c.type.name != "CALIBRATION"]
        calib = [c.id for c in collections if c.type.name == "CALIBRATION"]
        for ids, t in ((tagged, stored.tags), (calib, stored.calibs)):
            if not ids:
                continue
            is_calib = t is stored.calibs
            null = sa.null().cast(sa.BigInteger())
            parts.append(
                sa.select(
                    *[t.c[x] for x in dims],
                    t.c.dataset_id,
                    t.c.collection_id,
                    d.c.run_id,
                    (t.c.valid_begin if is_calib else null).label("valid_begin"),
                    (t.c.valid_end if is_calib else null).label("valid_end"),
                )
                .join_from(t, d, d.c.dataset_id == t.c.dataset_id)
                .where(
                    t.c.dataset_type_id == stored.id,
                    t.c.collection_id.in_(ids),
                    *restrict_columns([t.c[x] for x in dims], keys),
                )
            )
        if not parts:
            return []
        stmt: Any = parts[0] if len(parts) == 1 else sa.union_all(*parts)
        wanted = set(keys)
        return [
            dict(r) for r in conn.execute(stmt).mappings() if tuple(r[x] for x in dims) in wanted
        ]

    def decertify(
        self,
        conn: sa.Connection,
        stored: StoredDatasetType,
        collection_id: int,
        timespan: Timespan,
        data_ids: Sequence[DataCoordinate] | None,
    ) -> int:
        """Remove validity inside ``timespan`` (splitting ranges); return rows touched."""
        dims = stored.dataset_type.dimensions
        keys = None if data_ids is None else [d.subset(dims).values_tuple for d in data_ids]
        touched = [
            r
            for r in self.calib_rows(conn, stored, [collection_id], keys)
            if Timespan(r["valid_begin"], r["valid_end"]).overlaps(timespan)
        ]
        if not touched:
            return 0
        c = stored.calibs
        conn.execute(c.delete().where(c.c.calib_id.in_([r["calib_id"] for r in touched])))
        pieces = []
        for r in touched:
            base = {k: v for k, v in r.items() if k != "calib_id"}
            if r["valid_begin"] < timespan.begin_nsec:
                pieces.append(dict(base, valid_end=timespan.begin_nsec))
            if r["valid_end"] > timespan.end_nsec:
                pieces.append(dict(base, valid_begin=timespan.end_nsec))
        if pieces:
            conn.execute(c.insert(), pieces)
        return len(touched)


def restrict_columns(
    columns: Sequence[Any], keys: Iterable[tuple[Any, ...]], limit: int = 10_000
) -> list[Any]:
    """Per-column IN constraints that contain ``keys`` (callers filter exactly afterwards)."""
    keys = list(keys)
    out = []
    for i, col in enumerate(columns):
        values = sorted({k[i] for k in keys}, key=repr)
        if len(values) <= limit:
            out.append(col.in_(values))
    return out


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: Any) -> None:
        return None
