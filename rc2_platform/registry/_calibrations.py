"""CALIBRATION collections: certify datasets over validity ranges, decertify, find by time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import DatasetRef
from rc2_platform.core.timespan import Timespan
from rc2_platform.errors import CalibrationConflictError, DimensionValueError
from rc2_platform.registry._bulk import restrict_columns
from rc2_platform.registry._datasets import DatasetManager, StoredDatasetType
from rc2_platform.registry.schema import RegistrySchema


class CalibrationManager:
    """Validity ranges of datasets in CALIBRATION collections (the ``calibs_<n>`` tables)."""

    def __init__(self, datasets: DatasetManager):
        self.datasets = datasets

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
        self.datasets.note_summary(conn, collection_id, stored.id)

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


def membership_rows(
    conn: sa.Connection,
    schema: RegistrySchema,
    stored: StoredDatasetType,
    collections: Sequence[Any],
    keys: Sequence[tuple[Any, ...]],
) -> list[dict[str, Any]]:
    """Tag and calibration rows (with run_id and validity) for data ID ``keys``, one query."""
    dims = stored.dataset_type.dimensions
    d = schema.dataset
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
    return [dict(r) for r in conn.execute(stmt).mappings() if tuple(r[x] for x in dims) in wanted]
