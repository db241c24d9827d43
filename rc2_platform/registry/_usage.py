"""Who uses what: chains holding a collection, collections holding datasets of a RUN.

The SQL behind refusals ("RUN x is still used by ...") and dataset-type removal. The
tags and calibration tables are shared per dimension group, so every query here also
restricts on ``dataset_type_id``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa

from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import CollectionType
from rc2_platform.core.timespan import Timespan
from rc2_platform.registry._bulk import chunks
from rc2_platform.registry._collections import CollectionManager
from rc2_platform.registry._datasets import DatasetManager, StoredDatasetType


class CollectionUse(NamedTuple):
    """A TAGGED or CALIBRATION collection holding ``datasets`` of the datasets asked about."""

    name: str
    type: CollectionType
    datasets: int


class Certification(NamedTuple):
    """One validity range of one dataset in a CALIBRATION collection."""

    dataset_id: uuid.UUID
    data_id: DataCoordinate
    timespan: Timespan


class UsageQueries:
    """Set-based lookups of collection and dataset users, and dataset-type removal."""

    def __init__(self, collections: CollectionManager, datasets: DatasetManager):
        self.collections = collections
        self.datasets = datasets
        self.schema = datasets.schema

    def chain_parents(self, conn: sa.Connection, collection_id: int) -> list[int]:
        """Ids of the CHAINED collections listing ``collection_id`` as a direct child."""
        t = self.schema.collection_chain
        stmt = sa.select(t.c.parent_id).where(t.c.child_id == collection_id).distinct()
        return sorted(conn.execute(stmt).scalars())

    def remove_from_chain(self, conn: sa.Connection, parent_id: int, child_id: int) -> None:
        """Drop ``child_id`` from chain ``parent_id``, keeping the others' order."""
        kept = [c for c in self.collections.children(conn, parent_id) if c != child_id]
        parent = self.collections.by_id(conn, parent_id).name
        self.collections.set_chain(
            conn, parent, [self.collections.by_id(conn, c).name for c in kept]
        )

    def _types_in(self, conn: sa.Connection, collection_ids: Sequence[int]) -> list[int]:
        t = self.schema.collection_summary
        stmt = sa.select(t.c.dataset_type_id).where(t.c.collection_id.in_(list(collection_ids)))
        return sorted(set(conn.execute(stmt.distinct()).scalars()))

    def users(
        self,
        conn: sa.Connection,
        *,
        run_ids: Sequence[int] | None = None,
        dataset_ids: Sequence[uuid.UUID] | None = None,
        type_ids: Sequence[int] | None = None,
        exclude: Iterable[int] = (),
    ) -> list[CollectionUse]:
        """TAGGED and CALIBRATION collections holding the selected datasets.

        Datasets are selected by RUN (``run_ids``), by id (``dataset_ids``) and/or by
        type (``type_ids``); a dataset's membership of its own RUN does not count, nor
        do the collections in ``exclude``.
        """
        if type_ids is None:
            type_ids = (
                self._types_in(conn, run_ids)
                if run_ids is not None
                else list(
                    conn.execute(sa.select(self.schema.dataset_type.c.dataset_type_id)).scalars()
                )
            )
        counts: dict[int, int] = {}
        tables: dict[str, tuple[sa.Table, list[int]]] = {}
        for type_id in type_ids:
            stored = self.datasets.by_id(conn, type_id)
            for table in (stored.tags, stored.calibs):
                tables.setdefault(table.name, (table, []))[1].append(type_id)
        parts: list[Sequence[uuid.UUID] | None] = (
            [None] if dataset_ids is None else list(chunks(list(dataset_ids)))
        )
        d = self.schema.dataset
        skip = set(exclude)
        for table, ids in tables.values():
            for part in parts:
                stmt = (
                    sa.select(table.c.collection_id, sa.func.count(sa.distinct(table.c.dataset_id)))
                    .join_from(table, d, d.c.dataset_id == table.c.dataset_id)
                    .where(table.c.dataset_type_id.in_(ids), table.c.collection_id != d.c.run_id)
                    .group_by(table.c.collection_id)
                )
                if run_ids is not None:
                    stmt = stmt.where(d.c.run_id.in_(list(run_ids)))
                if part is not None:
                    stmt = stmt.where(table.c.dataset_id.in_(list(part)))
                for cid, n in conn.execute(stmt):
                    if cid not in skip:
                        counts[cid] = counts.get(cid, 0) + int(n)
        out = []
        for cid, n in counts.items():
            rec = self.collections.by_id(conn, cid)
            out.append(CollectionUse(rec.name, rec.type, n))
        return sorted(out, key=lambda u: u.name)

    def count_by_run(self, conn: sa.Connection, type_id: int) -> dict[str, int]:
        """RUN name -> number of datasets of ``type_id`` in it."""
        d = self.schema.dataset
        stmt = (
            sa.select(d.c.run_id, sa.func.count())
            .where(d.c.dataset_type_id == type_id)
            .group_by(d.c.run_id)
        )
        return {
            self.collections.by_id(conn, run_id).name: int(n) for run_id, n in conn.execute(stmt)
        }

    def remove_dataset_type(self, conn: sa.Connection, stored: StoredDatasetType) -> int:
        """Delete a dataset type with all its datasets and memberships; return datasets."""
        d = self.schema.dataset
        n = conn.execute(
            sa.select(sa.func.count()).where(d.c.dataset_type_id == stored.id)
        ).scalar_one()
        conn.execute(stored.calibs.delete().where(stored.calibs.c.dataset_type_id == stored.id))
        self.datasets.delete_where(conn, d.c.dataset_type_id == stored.id)
        t = self.schema.dataset_type
        conn.execute(t.delete().where(t.c.dataset_type_id == stored.id))
        return int(n)

    def certifications(
        self,
        conn: sa.Connection,
        rows: Iterable[dict[str, Any]],
        stored: StoredDatasetType,
    ) -> list[Certification]:
        """Calibration rows (from ``CalibrationManager.calib_rows``) as certifications."""
        dims = stored.dataset_type.dimensions
        out = [
            Certification(
                r["dataset_id"],
                DataCoordinate(dims, tuple(r[x] for x in dims)),
                Timespan(r["valid_begin"], r["valid_end"]),
            )
            for r in rows
        ]
        return sorted(out, key=lambda c: (repr(c.data_id.values_tuple), c.timespan.begin_nsec))
