"""Queries for data IDs and dimension records (joins planned by :class:`QueryBuilder`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import DatasetType
from rc2_platform.errors import CollectionTypeError, DimensionError
from rc2_platform.registry._connections import Connections
from rc2_platform.registry._records import RecordManager
from rc2_platform.registry._search import CollectionArg, DatasetSearch


class DataIdQueries:
    """Distinct data IDs, dimension records and materialized overlaps.

    Parameters
    ----------
    db : Connections
        The registry's connections.
    records : RecordManager
        Dimension records (row conversion).
    search : DatasetSearch
        Search paths for dataset constraints.
    """

    def __init__(self, db: Connections, records: RecordManager, search: DatasetSearch):
        self.db = db
        self.records = records
        self.search = search
        self.queries = search.queries
        self.schema = records.schema
        self.universe = records.universe

    def data_id_rows(
        self,
        dimensions: Iterable[str],
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        datasets: Iterable[str | DatasetType] | None = None,
        collections: CollectionArg | None = None,
    ) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        """See :meth:`rc2_platform.registry.Registry.query_data_id_rows`."""
        dims = self.universe.expand(dimensions)
        with self.db.read() as conn:
            expr = self.queries.parse(where)
            wdims, elements = self.queries.referenced(expr)
            relations: list[sa.FromClause] = []
            for dt in datasets or ():
                stored = self.search.datasets.get(conn, dt)
                if collections is None:
                    raise CollectionTypeError("a dataset constraint needs collections to search")
                path = self.search.search_path(conn, stored, collections)
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

    def where_dimensions(self, where: str) -> set[str]:
        """See :meth:`rc2_platform.registry.Registry.where_dimensions`."""
        dims, _ = self.queries.referenced(self.queries.parse(where))
        return dims

    def data_ids(
        self,
        dimensions: Sequence[str],
        where: str,
        bind: Mapping[str, Any] | None,
        datasets: Iterable[str | DatasetType] | None,
        collections: CollectionArg | None,
        full: bool,
    ) -> list[DataCoordinate]:
        """See :meth:`rc2_platform.registry.Registry.query_data_ids`."""
        names, rows = self.data_id_rows(dimensions, where, bind, datasets, collections)
        keep = self.universe.expand(dimensions) if full else self.universe.required(dimensions)
        idx = [names.index(d) for d in keep]
        out = {DataCoordinate(keep, tuple(r[i] for i in idx)) for r in rows}
        return sorted(out, key=lambda c: tuple((str(type(v)), v) for v in c.values_tuple))

    def dimension_records(
        self, element: str, where: str = "", bind: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """See :meth:`rc2_platform.registry.Registry.query_dimension_records`."""
        el = self.universe[element]
        if not el.has_table:
            raise DimensionError(f"{element!r} has no records (it is a sky pixelization)")
        table = self.schema.elements[element]
        with self.db.read() as conn:
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

    def key_values(
        self, element: str, columns: Sequence[str], equal: Mapping[str, Any]
    ) -> set[tuple[Any, ...]]:
        """Distinct ``columns`` of the records of ``element`` whose columns equal ``equal``."""
        el = self.universe[element]
        if not el.has_table:
            raise DimensionError(f"{element!r} has no records (it is a sky pixelization)")
        table = self.schema.elements[element]
        unknown = [c for c in [*columns, *equal] if c not in el.columns]
        if unknown:
            raise DimensionError(
                f"{element} has no column(s) {unknown}; its columns are {list(el.columns)}"
            )
        stmt = (
            sa.select(*[table.c[c] for c in columns])
            .where(*[table.c[c] == v for c, v in equal.items()])
            .distinct()
        )
        with self.db.read() as conn:
            return {tuple(r) for r in conn.execute(stmt)}

    def overlap_keys(
        self, element: str, other: str, columns: Sequence[str]
    ) -> set[tuple[Any, ...]]:
        """Distinct ``columns`` of the materialized overlaps of ``element`` with ``other``.

        Raises DimensionError when no overlap table relates the two elements.
        """
        for ov in self.universe.config.overlaps:
            if {ov.a, ov.b} == {element, other}:
                table = self.schema.overlaps[ov.table]
                break
        else:
            raise DimensionError(
                f"no materialized overlap between {element!r} and {other!r}; the universe "
                f"has {[(o.a, o.b) for o in self.universe.config.overlaps]}"
            )
        stmt = sa.select(*[table.c[c] for c in columns]).distinct()
        with self.db.read() as conn:
            return {tuple(r) for r in conn.execute(stmt)}

    def count_records(self, element: str) -> int:
        """The number of records of ``element``."""
        if not self.universe[element].has_table:
            raise DimensionError(f"{element!r} has no records (it is a sky pixelization)")
        table = self.schema.elements[element]
        with self.db.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
