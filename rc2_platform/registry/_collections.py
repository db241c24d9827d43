"""Collections: RUN, TAGGED, CHAINED and CALIBRATION, with a cache of names and chains."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from rc2_platform.core.dataset_types import CollectionType
from rc2_platform.core.names import check_collection_name
from rc2_platform.errors import (
    CollectionCycleError,
    CollectionError,
    CollectionTypeError,
    MissingCollectionError,
)
from rc2_platform.registry.schema import RegistrySchema


@dataclass(frozen=True, slots=True)
class CollectionRecord:
    """One collection row."""

    id: int
    name: str
    type: CollectionType
    doc: str | None = None


class CollectionManager:
    """Create, chain, list and resolve collections (cached by name and id)."""

    def __init__(self, schema: RegistrySchema):
        self.schema = schema
        self._by_name: dict[str, CollectionRecord] = {}
        self._by_id: dict[int, CollectionRecord] = {}
        self._chains: dict[int, tuple[int, ...]] = {}

    def clear_cache(self) -> None:
        """Forget cached collections and chains (after another process changed them)."""
        self._by_name.clear()
        self._by_id.clear()
        self._chains.clear()

    def _remember(self, rec: CollectionRecord) -> CollectionRecord:
        self._by_name[rec.name] = rec
        self._by_id[rec.id] = rec
        return rec

    def get(self, conn: sa.Connection, name: str) -> CollectionRecord:
        """The record of collection ``name`` (MissingCollectionError if absent)."""
        rec = self._by_name.get(name)
        if rec is not None:
            return rec
        t = self.schema.collection
        # A NUL cannot be stored (PostgreSQL refuses it in a query): no such collection.
        row = None if "\x00" in name else conn.execute(sa.select(t).where(t.c.name == name)).first()
        if row is None:
            raise MissingCollectionError(
                f"collection {name!r} does not exist; `rc2 collections list REPO` shows the "
                "existing ones"
            )
        return self._remember(
            CollectionRecord(row.collection_id, row.name, CollectionType(row.type), row.doc)
        )

    def by_id(self, conn: sa.Connection, collection_id: int) -> CollectionRecord:
        """The record of the collection with primary key ``collection_id``."""
        rec = self._by_id.get(collection_id)
        if rec is None:
            t = self.schema.collection
            row = conn.execute(sa.select(t).where(t.c.collection_id == collection_id)).one()
            rec = self._remember(
                CollectionRecord(row.collection_id, row.name, CollectionType(row.type), row.doc)
            )
        return rec

    def register(
        self, conn: sa.Connection, name: str, type: CollectionType, doc: str | None = None
    ) -> bool:
        """Create a collection; False if it exists with that type (another type -> error)."""
        check_collection_name(
            name, "RUN" if type == CollectionType.RUN else f"{type.name} collection"
        )
        try:
            existing = self.get(conn, name)
        except MissingCollectionError:
            existing = None
        if existing is not None:
            if existing.type != type:
                raise CollectionTypeError(
                    f"collection {name!r} already exists as {existing.type.name}, not {type.name}"
                )
            return False
        t = self.schema.collection
        new_id = conn.execute(
            t.insert().values(name=name, type=int(type), doc=doc).returning(t.c.collection_id)
            if conn.dialect.insert_returning
            else t.insert().values(name=name, type=int(type), doc=doc)
        )
        cid = (
            new_id.scalar_one() if conn.dialect.insert_returning else new_id.inserted_primary_key[0]  # type: ignore[index]
        )
        self._remember(CollectionRecord(int(cid), name, type, doc))
        return True

    def require_type(
        self, conn: sa.Connection, name: str, *types: CollectionType, action: str
    ) -> CollectionRecord:
        """Return the record, raising CollectionTypeError unless its type is one of ``types``."""
        rec = self.get(conn, name)
        if rec.type not in types:
            wanted = " or ".join(t.name for t in types)
            raise CollectionTypeError(
                f"cannot {action} collection {name!r}: it is {rec.type.name}, not {wanted}"
            )
        return rec

    # --- chains -----------------------------------------------------------------------

    def children(self, conn: sa.Connection, parent_id: int) -> tuple[int, ...]:
        """Direct children ids of a CHAINED collection, in order."""
        if parent_id not in self._chains:
            t = self.schema.collection_chain
            rows = conn.execute(
                sa.select(t.c.child_id).where(t.c.parent_id == parent_id).order_by(t.c.position)
            ).scalars()
            self._chains[parent_id] = tuple(rows)
        return self._chains[parent_id]

    def set_chain(self, conn: sa.Connection, parent: str, children: Sequence[str]) -> None:
        """Replace the children of CHAINED ``parent`` (cycles -> CollectionCycleError)."""
        rec = self.require_type(conn, parent, CollectionType.CHAINED, action="set the chain of")
        child_recs = [self.get(conn, c) for c in children]
        for child in child_recs:
            if rec.id in self._flatten_ids(conn, [child.id], include_chains=True):
                raise CollectionCycleError(
                    f"chain {parent!r} cannot contain {child.name!r}: {child.name!r} already "
                    f"contains {parent!r}, which would make a cycle"
                )
        t = self.schema.collection_chain
        conn.execute(t.delete().where(t.c.parent_id == rec.id))
        if child_recs:
            conn.execute(
                t.insert(),
                [
                    {"parent_id": rec.id, "position": i, "child_id": c.id}
                    for i, c in enumerate(child_recs)
                ],
            )
        self._chains[rec.id] = tuple(c.id for c in child_recs)

    def get_chain(self, conn: sa.Connection, parent: str) -> list[str]:
        """Names of the direct children of CHAINED ``parent``."""
        rec = self.require_type(conn, parent, CollectionType.CHAINED, action="read the chain of")
        return [self.by_id(conn, c).name for c in self.children(conn, rec.id)]

    def _flatten_ids(
        self, conn: sa.Connection, ids: Iterable[int], include_chains: bool = False
    ) -> list[int]:
        out: list[int] = []
        seen: set[int] = set()

        def visit(cid: int, depth: int) -> None:
            if depth > 100:
                raise CollectionCycleError("collection chains nest more than 100 deep (a cycle?)")
            rec = self.by_id(conn, cid)
            if rec.type == CollectionType.CHAINED:
                if include_chains and cid not in seen:
                    seen.add(cid)
                    out.append(cid)
                for child in self.children(conn, cid):
                    visit(child, depth + 1)
            elif cid not in seen:
                seen.add(cid)
                out.append(cid)

        for cid in ids:
            visit(cid, 0)
        return out

    def flatten(self, conn: sa.Connection, names: str | Sequence[str]) -> list[CollectionRecord]:
        """Ordered, deduplicated non-CHAINED collections searched for ``names``."""
        if isinstance(names, str):
            names = [names]
        ids = [self.get(conn, n).id for n in names]
        return [self.by_id(conn, i) for i in self._flatten_ids(conn, ids)]

    # --- listing / removal ------------------------------------------------------------

    def query(
        self,
        conn: sa.Connection,
        pattern: str | re.Pattern[str] | None = None,
        types: Iterable[CollectionType] | None = None,
    ) -> list[str]:
        """Names of collections matching a glob or regex and one of ``types``, sorted."""
        t = self.schema.collection
        stmt = sa.select(t).order_by(t.c.name)
        if types is not None:
            stmt = stmt.where(t.c.type.in_([int(x) for x in types]))
        out = []
        for row in conn.execute(stmt):
            self._remember(
                CollectionRecord(row.collection_id, row.name, CollectionType(row.type), row.doc)
            )
            if pattern is None:
                out.append(row.name)
            elif isinstance(pattern, re.Pattern):
                if pattern.fullmatch(row.name):
                    out.append(row.name)
            elif fnmatch.fnmatchcase(row.name, pattern):
                out.append(row.name)
        return out

    def remove(self, conn: sa.Connection, name: str) -> None:
        """Delete a collection; refuse if chained.

        A RUN's datasets must be deleted first, with their tags rows and datastore
        records (``DatasetManager.delete_where``: no foreign key cascades them).
        """
        rec = self.get(conn, name)
        t = self.schema.collection_chain
        parents = (
            conn.execute(sa.select(t.c.parent_id).where(t.c.child_id == rec.id)).scalars().all()
        )
        if parents:
            names = sorted(self.by_id(conn, p).name for p in parents)
            raise CollectionError(
                f"collection {name!r} is a child of chain(s) {names}; remove it from them first"
            )
        conn.execute(
            self.schema.collection.delete().where(self.schema.collection.c.collection_id == rec.id)
        )
        self.clear_cache()
