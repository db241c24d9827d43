"""SQLAlchemy Core tables of the registry, generated from the dimension universe.

Every identifier is lower case and at most 30 characters (Oracle); constraint and index
names are derived by :func:`short_name`. Dataset membership lives in one *tags* table
and one *calibs* table per set of dataset-type dimensions (``tags_<n>``, ``calibs_<n>``),
whose data ID columns make the find-first search a single indexed query.
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa

from rc2_platform.registry._dialect import CLUSTERED_PRIMARY_KEY, big_identity_type
from rc2_platform.registry.dimensions import ColumnConfig, DimensionElement, DimensionUniverse

#: Version of the schema written by this code; opening another one fails.
SCHEMA_VERSION = "1.2"

#: Schema versions :class:`RegistrySchema` can still describe (migrations build the older
#: ones' tables from it): 1.1 differs only by the foreign keys from ``tags_<n>`` and
#: ``file_datastore_records`` to ``dataset``.
DESCRIBED_VERSIONS = ("1.1", "1.2")

MAX_NAME = 30


def short_name(name: str) -> str:
    """Lower-case ``name``, shortened to <= 30 characters with a stable hash suffix."""
    name = name.lower()
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.md5(name.encode()).hexdigest()[:6]
    return f"{name[: MAX_NAME - 7]}_{digest}"


def _cols(const: Any, table: sa.Table) -> str:
    return "_".join(c.name for c in const.columns) if const.columns else "x"


def _fk_name(const: Any, table: sa.Table) -> str:
    cols = "_".join(e.parent.name for e in const.elements)
    return short_name(f"{table.name}_{cols}_fk")


_CONVENTION: dict[str, Any] = {
    "ix_short": lambda c, t: short_name(f"{t.name}_{_cols(c, t)}_ix"),
    "uq_short": lambda c, t: short_name(f"{t.name}_{_cols(c, t)}_uq"),
    "pk_short": lambda c, t: short_name(f"{t.name}_pk"),
    "fk_short": _fk_name,
    "ix": "%(ix_short)s",
    "uq": "%(uq_short)s",
    "pk": "%(pk_short)s",
    "fk": "%(fk_short)s",
}


def column_type(config: ColumnConfig) -> sa.types.TypeEngine[Any]:
    """SQL type of a key or metadata column."""
    if config.type == "int":
        return sa.BigInteger()
    if config.type == "float":
        return sa.Double()
    if config.type == "bool":
        return sa.Boolean()
    return sa.String(config.length)


class RegistrySchema:
    """The static tables, dimension tables and overlap tables of one universe.

    Parameters
    ----------
    universe : DimensionUniverse
        The dimension universe the tables are generated from.
    version : str
        The schema version whose tables to describe (:data:`DESCRIBED_VERSIONS`; the
        current one unless a migration needs an older one's definitions).

    Attributes
    ----------
    metadata : sqlalchemy.MetaData
        Holds every table (dynamic tags/calibs tables are added by :meth:`group_tables`).
    elements : dict[str, sqlalchemy.Table]
        One table per element that has one.
    overlaps : dict[str, sqlalchemy.Table]
        One table per configured overlap, keyed by table name.
    """

    def __init__(self, universe: DimensionUniverse, version: str = SCHEMA_VERSION):
        if version not in DESCRIBED_VERSIONS:
            raise ValueError(f"schema {version} is not described here ({DESCRIBED_VERSIONS})")
        self.universe = universe
        self.version = version
        self.metadata = sa.MetaData(naming_convention=_CONVENTION)
        md = self.metadata
        self.meta = sa.Table(
            "rc2_meta",
            md,
            sa.Column("name", sa.String(64), primary_key=True),
            sa.Column("value", sa.Text(), nullable=False),
        )
        self.elements: dict[str, sa.Table] = {}
        for el in universe.elements:
            if el.has_table:
                self.elements[el.name] = self._element_table(el)
        self.overlaps: dict[str, sa.Table] = {}
        for ov in universe.config.overlaps:
            self.overlaps[ov.table] = self._overlap_table(ov.table, ov.a, ov.b)
        self._static_tables()
        self._groups: dict[int, tuple[sa.Table, sa.Table]] = {}
        self._checks: dict[tuple[str, ...], list[str]] = {}

    # --- column helpers ---------------------------------------------------------------

    def dimension_column(self, dimension: str, **kwargs: Any) -> sa.Column[Any]:
        """A column holding values of ``dimension`` (named like it)."""
        key = self.universe[dimension].key
        assert key is not None
        return sa.Column(dimension, column_type(key), **kwargs)

    def _dimension_fks(
        self, dims: tuple[str, ...], skip: str | None = None
    ) -> list[sa.ForeignKeyConstraint]:
        """Foreign keys from columns ``dims`` to each dimension's table."""
        out = []
        present = set(dims)
        # A dimension required by another one of ``dims`` is checked transitively
        # (exposure -> instrument): skip its FK, each FK costs a check per inserted row.
        covered = {r for d in dims if d != skip for r in self.universe[d].required if r != d}
        for d in dims:
            el = self.universe[d]
            if d == skip or d in covered or not el.has_table or not set(el.required) <= present:
                continue
            target = self.elements[d]
            out.append(
                sa.ForeignKeyConstraint(list(el.required), [target.c[c] for c in el.required])
            )
        return out

    def _element_table(self, el: DimensionElement) -> sa.Table:
        cols: list[Any] = [
            self.dimension_column(d, primary_key=True, autoincrement=False) for d in el.required
        ]
        cols += [self.dimension_column(d, nullable=True) for d in el.implied]
        cols += [sa.Column(m.name, column_type(m), nullable=m.nullable) for m in el.metadata]
        if el.has_region:
            cols.append(sa.Column("region", sa.LargeBinary(), nullable=True))
        if el.has_timespan:
            cols.append(sa.Column("timespan_begin", sa.BigInteger(), nullable=True))
            cols.append(sa.Column("timespan_end", sa.BigInteger(), nullable=True))
        # FKs: to the tables of required dimensions (not itself) and of implied ones.
        fks = self._dimension_fks(el.required, skip=el.name if el.is_dimension else None)
        for imp in el.implied:
            target = self.universe[imp]
            if target.has_table and set(target.required) <= set(el.required) | {imp}:
                fks.append(
                    sa.ForeignKeyConstraint(
                        list(target.required),
                        [self.elements[imp].c[c] for c in target.required],
                    )
                )
        table = sa.Table(el.name, self.metadata, *cols, *fks)
        for imp in el.implied:
            sa.Index(None, table.c[imp])
        return table

    def _overlap_table(self, name: str, a: str, b: str) -> sa.Table:
        """A materialized overlap table: the composite primary key only.

        No foreign keys: overlap rows are written only by the registry, from records
        it has just validated and inserted (dimension records are never deleted), so
        a per-row FK check (a trigger per row on PostgreSQL) would buy nothing. On
        SQLite the table is ``WITHOUT ROWID`` (the primary-key B-tree is the table).
        """
        dims = self.universe.sorted(set(self.universe[a].required) | set(self.universe[b].required))
        cols = [self.dimension_column(d, primary_key=True, autoincrement=False) for d in dims]
        table = sa.Table(name, self.metadata, *cols, **CLUSTERED_PRIMARY_KEY)
        # The primary key leads with side a's columns; index side b for the reverse join.
        sa.Index(None, *[table.c[d] for d in self.universe[b].required])
        return table

    def _static_tables(self) -> None:
        md = self.metadata
        self.collection = sa.Table(
            "collection",
            md,
            sa.Column("collection_id", sa.Integer(), sa.Identity(), primary_key=True),
            sa.Column("name", sa.String(255), nullable=False, unique=True),
            sa.Column("type", sa.SmallInteger(), nullable=False),
            sa.Column("doc", sa.Text(), nullable=True),
        )
        self.collection_chain = sa.Table(
            "collection_chain",
            md,
            sa.Column(
                "parent_id",
                sa.ForeignKey("collection.collection_id", ondelete="CASCADE"),
                primary_key=True,
            ),
            sa.Column("position", sa.Integer(), primary_key=True, autoincrement=False),
            sa.Column(
                "child_id", sa.ForeignKey("collection.collection_id"), nullable=False, index=True
            ),
        )
        self.dataset_group = sa.Table(
            "dataset_group",
            md,
            sa.Column("group_id", sa.Integer(), sa.Identity(), primary_key=True),
            sa.Column("dimensions", sa.String(512), nullable=False, unique=True),
        )
        self.dataset_type = sa.Table(
            "dataset_type",
            md,
            sa.Column("dataset_type_id", sa.Integer(), sa.Identity(), primary_key=True),
            sa.Column("name", sa.String(128), nullable=False, unique=True),
            sa.Column("dimensions", sa.String(512), nullable=False),
            sa.Column("storage_class", sa.String(64), nullable=False),
            sa.Column("is_calibration", sa.Boolean(), nullable=False),
            sa.Column("group_id", sa.ForeignKey("dataset_group.group_id"), nullable=False),
        )
        # No foreign keys on the two hot tables' type/run/collection/data ID columns: each
        # costs a check (a trigger on PostgreSQL) per inserted row. The registry writes
        # those values from its own cached records and validates data IDs set-wise per
        # batch (see ``DatasetChecks.check_data_ids``); collection removal deletes the
        # membership rows explicitly.
        self.dataset = sa.Table(
            "dataset",
            md,
            sa.Column("dataset_id", sa.Uuid(), primary_key=True),
            sa.Column("dataset_type_id", sa.Integer(), nullable=False),
            sa.Column("run_id", sa.Integer(), nullable=False),
        )
        # Removal of a run; also covers searches by run and type.
        sa.Index(None, self.dataset.c.run_id, self.dataset.c.dataset_type_id)
        self.collection_summary = sa.Table(
            "collection_summary",
            md,
            sa.Column(
                "collection_id",
                sa.ForeignKey("collection.collection_id", ondelete="CASCADE"),
                primary_key=True,
            ),
            sa.Column(
                "dataset_type_id",
                sa.ForeignKey("dataset_type.dataset_type_id", ondelete="CASCADE"),
                primary_key=True,
            ),
        )
        # Since 1.2 no foreign key to ``dataset`` (a per-row check, a trigger per row on
        # PostgreSQL): records are written with their dataset rows in one transaction and
        # removed explicitly with them (``DatasetManager.delete`` and friends).
        self.file_datastore_records = sa.Table(
            "file_datastore_records",
            md,
            sa.Column("dataset_id", *self._dataset_fk(), primary_key=True),
            sa.Column("path", sa.String(1024), nullable=False),
            sa.Column("storage_class", sa.String(64), nullable=False),
            sa.Column("formatter", sa.String(128), nullable=False),
            sa.Column("file_size", sa.BigInteger(), nullable=True),
        )

    def _dataset_fk(self) -> list[Any]:
        """Type and (schema 1.1 only) cascading foreign key of a ``dataset_id`` column."""
        if self.version == "1.1":
            return [sa.ForeignKey("dataset.dataset_id", ondelete="CASCADE")]
        return [sa.Uuid()]

    # --- dynamic per-dimension-group tables -------------------------------------------

    def group_tables(self, group_id: int, dimensions: tuple[str, ...]) -> tuple[sa.Table, sa.Table]:
        """The ``(tags, calibs)`` tables of dataset types with ``dimensions``."""
        if group_id in self._groups:
            return self._groups[group_id]
        tags = self._membership_table(f"tags_{group_id}", dimensions, calib=False)
        calibs = self._membership_table(f"calibs_{group_id}", dimensions, calib=True)
        self._groups[group_id] = (tags, calibs)
        return tags, calibs

    def _membership_table(self, name: str, dims: tuple[str, ...], calib: bool) -> sa.Table:
        if not calib:
            return self._tags_table(name, dims)
        cols: list[Any] = [
            sa.Column(
                "calib_id",
                big_identity_type(),
                sa.Identity(),
                primary_key=True,
            ),
            sa.Column(
                "dataset_type_id",
                sa.ForeignKey("dataset_type.dataset_type_id"),
                nullable=False,
            ),
            sa.Column(
                "collection_id",
                sa.ForeignKey("collection.collection_id", ondelete="CASCADE"),
                nullable=False,
            ),
            sa.Column(
                "dataset_id",
                sa.ForeignKey("dataset.dataset_id", ondelete="CASCADE"),
                nullable=False,
            ),
        ]
        cols += [self.dimension_column(d, nullable=False) for d in dims]
        cols.append(sa.Column("valid_begin", sa.BigInteger(), nullable=False))
        cols.append(sa.Column("valid_end", sa.BigInteger(), nullable=False))
        table = sa.Table(name, self.metadata, *cols, *self._dimension_fks(dims))
        sa.Index(None, table.c.dataset_type_id, table.c.collection_id, *[table.c[d] for d in dims])
        sa.Index(None, table.c.dataset_id)
        return table

    def _tags_table(self, name: str, dims: tuple[str, ...]) -> sa.Table:
        """RUN/TAGGED membership: the table every dataset insert writes a row to.

        No foreign keys (since 1.2 not even to ``dataset``): data IDs are validated
        set-wise per batch by the registry, the rows of a RUN are written with their
        dataset rows in one transaction, and removal of datasets, RUNs, TAGGED
        collections and dataset types deletes the rows explicitly, so an insert costs
        no per-row check. The primary key leads with ``dataset_id`` and so also serves
        removal and tagging by id.
        """
        cols: list[Any] = [
            sa.Column("dataset_type_id", sa.Integer(), nullable=False),
            sa.Column("collection_id", sa.Integer(), nullable=False, primary_key=True),
            sa.Column("dataset_id", *self._dataset_fk(), nullable=False, primary_key=True),
        ]
        cols += [self.dimension_column(d, nullable=False) for d in dims]
        table = sa.Table(
            name,
            self.metadata,
            *cols,
            sa.PrimaryKeyConstraint("dataset_id", "collection_id"),
        )
        # One dataset per (type, collection, data ID); also the find-first index.
        sa.UniqueConstraint(
            table.c.dataset_type_id, table.c.collection_id, *[table.c[d] for d in dims]
        )
        return table

    def dimension_checks(self, dims: tuple[str, ...]) -> list[str]:
        """Elements whose records must exist for data IDs of ``dims`` (one check each).

        The same elements a foreign key would reference: a dimension required by
        another one of ``dims`` is covered by that one's check.
        """
        checks = self._checks.get(dims)
        if checks is None:  # building the constraints costs ~0.3 ms: once per dimensions
            checks = self._checks[dims] = [
                fk.referred_table.name for fk in self._dimension_fks(dims)
            ]
        return list(checks)

    def all_tables(self) -> list[sa.Table]:
        """Every table known so far, dependencies first."""
        return list(self.metadata.sorted_tables)
