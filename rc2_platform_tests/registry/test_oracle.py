"""The schema and representative queries compile under SQLAlchemy's Oracle dialect."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.dialects import oracle
from sqlalchemy.schema import CreateIndex, CreateTable

from rc2_platform.registry import CollectionType, DatasetType, DimensionUniverse
from rc2_platform.registry._collections import CollectionRecord
from rc2_platform.registry._datasets import StoredDatasetType
from rc2_platform.registry._queries import QueryBuilder
from rc2_platform.registry.schema import RegistrySchema

DIALECT = oracle.dialect()
IDENT = re.compile(r'"?([A-Za-z_][A-Za-z0-9_$#]*)"?')


def _names(schema: RegistrySchema) -> list[str]:
    out = []
    for table in schema.all_tables():
        out.append(table.name)
        out += [c.name for c in table.columns]
        out += [str(c.name) for c in table.constraints if c.name]
        out += [str(i.name) for i in table.indexes]
    return out


def _schema_with_groups() -> tuple[RegistrySchema, StoredDatasetType]:
    schema = RegistrySchema(DimensionUniverse.default())
    dims = ("instrument", "detector", "visit")
    tags, calibs = schema.group_tables(1, dims)
    schema.group_tables(2, ("skymap", "tract", "patch", "band"))
    stored = StoredDatasetType(DatasetType("calexp", dims, "ExposureF"), 1, tags, calibs)
    return schema, stored


def test_ddl_compiles_with_short_lower_case_identifiers() -> None:
    schema, _ = _schema_with_groups()
    for table in schema.all_tables():
        assert str(CreateTable(table).compile(dialect=DIALECT))
        for index in table.indexes:
            assert str(CreateIndex(index).compile(dialect=DIALECT))
    for name in _names(schema):
        assert len(name) <= 30, name
        assert name == name.lower(), name


def test_find_first_and_spatial_queries_compile() -> None:
    schema, stored = _schema_with_groups()
    qb = QueryBuilder(schema)
    path = [
        CollectionRecord(1, "a", CollectionType.RUN),
        CollectionRecord(2, "b", CollectionType.TAGGED),
        CollectionRecord(3, "c", CollectionType.CALIBRATION),
    ]
    stmt = qb.dataset_rows(stored, path)
    assert stmt is not None
    sql = str(stmt.compile(dialect=DIALECT))
    assert "row_number() over" in sql.lower()
    expr = qb.parse("tract = 9615 AND band IN ('g', 'r') AND visit > :v")
    plan = qb.plan({"visit", "detector", "patch", "band"})
    query = (
        sa.select(*plan.dims.values())
        .select_from(plan.from_)
        .where(*qb.where_clause(plan, expr, {"v": 3}))
        .distinct()
    )
    sql = str(query.compile(dialect=DIALECT))
    assert "ovl_vdr_patch" in sql
    for word in IDENT.findall(sql):
        assert len(word) <= 30, word
