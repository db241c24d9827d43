"""Query construction: dimension joins, spatial overlap joins, where-expressions, find-first."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from rc2_platform.core.dataset_types import CollectionType
from rc2_platform.core.timespan import Timespan
from rc2_platform.errors import ExpressionError
from rc2_platform.registry._bulk import restrict_columns
from rc2_platform.registry._collections import CollectionRecord
from rc2_platform.registry._datasets import StoredDatasetType
from rc2_platform.registry.schema import RegistrySchema


@dataclass
class JoinPlan:
    """The FROM clause of a query and the columns it provides."""

    from_: sa.FromClause
    dims: dict[str, sa.ColumnElement[Any]]
    tables: dict[str, sa.FromClause]
    where: list[sa.ColumnElement[bool]] = field(default_factory=list)
    distinct: bool = False


class QueryBuilder:
    """Build joins over dimension tables, overlap tables and dataset subqueries."""

    def __init__(self, schema: RegistrySchema):
        self.schema = schema
        self.universe = schema.universe

    def parse(self, where: str) -> Any:
        """Parse a where-string (None when empty)."""
        if not where or not where.strip():
            return None
        from rc2_platform.registry.expressions import parse_where

        return parse_where(where)

    def referenced(self, expr: Any) -> tuple[set[str], set[str]]:
        """(dimensions, elements) referenced by an expression's identifiers."""
        dims: set[str] = set()
        elements: set[str] = set()
        if expr is None:
            return dims, elements
        for ident in expr.identifiers():
            if "." in ident:
                name, column = ident.split(".", 1)
                el = self.universe[name] if name in self.universe else None  # noqa: SIM401
                if el is None or not el.has_table or column not in el.columns:
                    known = [] if el is None else list(el.columns)
                    raise ExpressionError(
                        f"unknown identifier {ident!r} in where-expression"
                        + (f"; {name} has columns {known}" if el is not None else "")
                    )
                elements.add(name)
                dims.update(el.required)
            elif ident in self.universe and self.universe[ident].is_dimension:
                dims.add(ident)
            else:
                raise ExpressionError(
                    f"unknown identifier {ident!r} in where-expression; use a dimension "
                    f"({', '.join(self.universe.dimensions)}) or element.column"
                )
        return dims, elements

    def plan(
        self,
        dimensions: Iterable[str],
        elements: Iterable[str] = (),
        relations: Sequence[sa.FromClause] = (),
    ) -> JoinPlan:
        """Join the tables that provide ``dimensions`` (expanded), ``elements`` and ``relations``.

        An element's table is left out when the others provide its columns, unless a
        relation gives a column the element implies without giving them all: a dataset
        relation giving ``band`` and the visit table giving ``physical_filter`` still join
        the physical_filter table, which relates the two (without it every band matches
        every visit), as LSST's queries do. A relation giving only an element's key (raw's
        exposure) beside the visit table giving its implied columns does not join the
        exposure table: visit_definition (always joined) relates the two.
        """
        elements = set(elements)
        full = self.universe.expand(
            set(dimensions) | {d for e in elements for d in self.universe[e].required}
        )
        wanted = set(full)
        sources = [{c.name for c in rel.columns if c.name in wanted} for rel in relations]
        provided: set[str] = set().union(*sources)
        chosen: list[str] = []
        for name in reversed(full):
            el = self.universe[name]
            if not el.has_table:
                continue
            cols = set(el.required) | set(el.implied)
            unrelated = any(s & set(el.implied) and not cols <= s for s in sources)
            if name in elements or not cols <= provided or unrelated:
                chosen.append(name)
                provided |= cols
        for name in sorted(elements - set(chosen)):
            chosen.append(name)
        for el in self.universe.elements:
            if el.always_join and el.name not in chosen and set(el.required) <= wanted:
                chosen.append(el.name)
        tables: dict[str, sa.FromClause] = {n: self.schema.elements[n] for n in chosen}
        overlap_rels, distinct = self._overlap_tables(wanted)
        plan = JoinPlan(from_=None, dims={}, tables=tables, distinct=distinct)  # type: ignore[arg-type]
        for rel in [*relations, *tables.values(), *overlap_rels]:
            self._join(plan, rel, wanted)
        if plan.from_ is None:
            raise ExpressionError("the query names no dimensions")
        return plan

    def _overlap_tables(self, wanted: set[str]) -> tuple[list[sa.Table], bool]:
        spatial = [
            el.name
            for el in self.universe.elements
            if (el.has_region or el.skypix_level is not None) and set(el.required) <= wanted
        ]
        # The finest element of each family in the query (visit_detector_region over
        # visit when detector is there, patch over tract), as LSST's automatic joins.
        finest: dict[str, set[str]] = {}
        for name in spatial:
            req = set(self.universe[name].required)
            fam = self.universe.spatial_family(name)
            if fam not in finest or finest[fam] < req:
                finest[fam] = req
        fams = sorted(finest)
        out, distinct = [], False
        for i, f1 in enumerate(fams):
            for f2 in fams[i + 1 :]:
                best = None
                for ov in self.universe.config.overlaps:
                    pair = {self.universe.spatial_family(ov.a), self.universe.spatial_family(ov.b)}
                    if pair != {f1, f2}:
                        continue
                    table = self.schema.overlaps[ov.table]
                    cols = {c.name for c in table.columns}
                    # A table coarser than a family's finest element (visit x tract for a
                    # query with patch) relates too much: a finer one (visit_detector_region
                    # x patch, projected) is preferred even with columns the query lacks.
                    rank = (sum(not finest[f] <= cols for f in (f1, f2)), len(cols - wanted))
                    if best is None or rank < best[0]:
                        best = (rank, table)
                if best is not None:
                    out.append(best[1])
                    distinct = distinct or best[0][1] > 0
        return out, distinct

    @staticmethod
    def _join(plan: JoinPlan, rel: sa.FromClause, wanted: set[str]) -> None:
        on = [rel.c[c.name] == plan.dims[c.name] for c in rel.columns if c.name in plan.dims]
        for c in rel.columns:
            if c.name in wanted and c.name not in plan.dims:
                plan.dims[c.name] = rel.c[c.name]
        if plan.from_ is None:
            plan.from_ = rel
        else:
            plan.from_ = plan.from_.join(rel, sa.and_(*on) if on else sa.true())

    def resolver(self, plan: JoinPlan) -> Any:
        """A ``resolve(identifier) -> column`` callback for :func:`to_sql`."""

        def resolve(ident: str) -> sa.ColumnElement[Any]:
            if "." in ident:
                name, column = ident.split(".", 1)
                if name in plan.tables and column in plan.tables[name].c:
                    return plan.tables[name].c[column]
            elif ident in plan.dims:
                return plan.dims[ident]
            raise ExpressionError(f"unknown identifier {ident!r} in where-expression")

        return resolve

    def where_clause(self, plan: JoinPlan, expr: Any, bind: Mapping[str, Any] | None) -> list[Any]:
        """The SQL condition of ``expr`` (empty list when there is none)."""
        if expr is None:
            return []
        from rc2_platform.registry.expressions import to_sql

        return [to_sql(expr, self.resolver(plan), bind or {})]

    # --- dataset searches -------------------------------------------------------------

    def dataset_rows(
        self,
        stored: StoredDatasetType,
        collections: Sequence[CollectionRecord],
        *,
        find_first: bool = True,
        timespan: Timespan | None = None,
        keys: Sequence[tuple[Any, ...]] | None = None,
        key_params: bool = False,
    ) -> sa.Select[Any] | None:
        """SELECT dims..., dataset_id, run_id of the datasets found in ``collections``.

        With ``find_first`` only the first collection (in search order) holding a data ID
        wins, resolved in SQL with ``ROW_NUMBER()``. CALIBRATION collections match rows
        whose validity overlaps ``timespan`` (any validity when it is None). None is
        returned when no collection can hold the dataset type.
        """
        dims = stored.dataset_type.dimensions
        ranks = {c.id: i for i, c in enumerate(collections)}
        all_runs = all(c.type == CollectionType.RUN for c in collections)
        parts = []
        tagged = [c.id for c in collections if c.type != CollectionType.CALIBRATION]
        calib = [c.id for c in collections if c.type == CollectionType.CALIBRATION]
        for ids, table in ((tagged, stored.tags), (calib, stored.calibs)):
            if not ids:
                continue
            cols = [table.c[d] for d in dims]
            rank: Any = (
                sa.literal(0)
                if len(ranks) == 1
                else sa.case({i: ranks[i] for i in ids}, value=table.c.collection_id)
            )
            order = sa.literal(0) if table is stored.tags else -table.c.valid_begin
            stmt = sa.select(
                *cols,
                table.c.dataset_id,
                table.c.collection_id,
                rank.label("rnk"),
                order.label("ord"),
            ).where(table.c.dataset_type_id == stored.id)
            stmt = stmt.where(
                table.c.collection_id == ids[0] if len(ids) == 1 else table.c.collection_id.in_(ids)
            )
            if table is stored.calibs and timespan is not None:
                stmt = stmt.where(
                    table.c.valid_begin < timespan.end_nsec, timespan.begin_nsec < table.c.valid_end
                )
            if key_params:
                stmt = stmt.where(*[c == sa.bindparam(f"k_{c.name}") for c in cols])
            elif keys is not None:
                stmt = stmt.where(*restrict_columns(cols, keys))
            parts.append(stmt)
        if not parts:
            return None
        inner: Any = parts[0] if len(parts) == 1 else sa.union_all(*parts)
        sub = inner.subquery("ds")
        if find_first and (len(ranks) > 1 or calib):
            rn = sa.func.row_number().over(
                partition_by=[sub.c[d] for d in dims], order_by=[sub.c.rnk, sub.c.ord]
            )
            sub = sa.select(*sub.c, rn.label("rn")).subquery("ranked")
            base = sa.select(*[sub.c[d] for d in dims], sub.c.dataset_id).where(sub.c.rn == 1)
        else:
            base = sa.select(*[sub.c[d] for d in dims], sub.c.dataset_id)
        if all_runs:
            return base.add_columns(sub.c.collection_id.label("run_id"))
        d = self.schema.dataset
        return base.add_columns(d.c.run_id).join_from(sub, d, d.c.dataset_id == sub.c.dataset_id)
