"""Schema migrations with Alembic: the schema version in the database, upgrades of old ones.

The schema version lives in two places kept in step: Alembic's ``alembic_version`` table
(one revision per schema version, ``migrations/versions/``) and ``rc2_meta``'s
``schema_version`` (which :meth:`Registry.open` checks). :func:`stamp_head` marks a new
registry; :func:`migrate` upgrades an older one in one transaction. Registries written
before Alembic have no ``alembic_version`` table; their ``rc2_meta`` version says where
they stand.

A registry also stores its dimension universe: a version-1 universe (read with its old
rules) is rewritten as version 2 by :func:`migrate` as well.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from rc2_platform.errors import SchemaVersionError
from rc2_platform.registry._dialect import backend
from rc2_platform.registry._engine import make_engine_for_migration, safe_url
from rc2_platform.registry.dimensions import DimensionUniverse
from rc2_platform.registry.schema import SCHEMA_VERSION, RegistrySchema

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

_log = logging.getLogger(__name__)

#: Alembic's table holding the revision of the schema.
VERSION_TABLE = "alembic_version"

#: Schema version -> Alembic revision (``migrations/versions/schema_<x>_<y>.py``).
REVISIONS: dict[str, str] = {"1.0": "schema_1_0", "1.1": "schema_1_1", "1.2": "schema_1_2"}

#: The revision this software writes and reads.
HEAD = REVISIONS[SCHEMA_VERSION]

#: Prefix of the copies a table rebuild keeps while the table is recreated.
_COPY_PREFIX = "rc2m_"


def _config(connection: sa.Connection | None = None) -> Config:
    """An Alembic configuration built in code (no ``alembic.ini``; alembic imported here)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "rc2_platform.registry:migrations")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def script_directory() -> ScriptDirectory:
    """The revisions shipped in ``rc2_platform/registry/migrations/versions``."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def _context(conn: sa.Connection) -> MigrationContext:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})


def stamp_head(conn: sa.Connection) -> None:
    """Record that the registry on ``conn`` has the newest schema (a new registry)."""
    _context(conn).stamp(script_directory(), HEAD)


def current_revision(conn: sa.Connection) -> str | None:
    """The Alembic revision stored in the registry (None before Alembic)."""
    return _context(conn).get_current_revision()


def is_migratable(version: str | None) -> bool:
    """Whether a registry at schema ``version`` can be upgraded by :func:`migrate`."""
    return version in REVISIONS and version != SCHEMA_VERSION


@dataclass
class MigrationStep:
    """One Alembic revision to apply: ``revision`` and the first line of its docstring."""

    revision: str
    description: str


@dataclass
class MigrationReport:
    """What :func:`migrate` found and did (or, with ``dry_run``, would do)."""

    url: str
    schema_from: str
    schema_to: str
    revision_from: str | None
    revision_to: str
    universe_from: int
    universe_to: int
    steps: list[MigrationStep] = field(default_factory=list)
    dry_run: bool = False

    @property
    def up_to_date(self) -> bool:
        """Nothing to do: schema, revision and universe are current."""
        return (
            not self.steps
            and self.revision_from == self.revision_to
            and (self.universe_from == self.universe_to)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``rc2 migrate --json``)."""
        return {
            "registry": self.url,
            "schema_from": self.schema_from,
            "schema_to": self.schema_to,
            "revision_from": self.revision_from,
            "revision_to": self.revision_to,
            "universe_from": self.universe_from,
            "universe_to": self.universe_to,
            "steps": [{"revision": s.revision, "description": s.description} for s in self.steps],
            "up_to_date": self.up_to_date,
            "dry_run": self.dry_run,
        }


def _read_meta(conn: sa.Connection, url: str) -> dict[str, str]:
    if not sa.inspect(conn).has_table("rc2_meta"):
        raise SchemaVersionError(f"{url} holds no rc2 registry (no rc2_meta table)")
    meta = sa.Table("rc2_meta", sa.MetaData(), autoload_with=conn)
    return {r[0]: r[1] for r in conn.execute(sa.select(meta.c.name, meta.c.value))}


def _plan(conn: sa.Connection, url: str, dry_run: bool) -> tuple[MigrationReport, str]:
    values = _read_meta(conn, url)
    found = values.get("schema_version", "?")
    if found not in REVISIONS:
        raise SchemaVersionError(
            f"registry at {url} has schema version {found}, which this software "
            f"(schema {SCHEMA_VERSION}) cannot migrate; use a matching rc2_platform release"
        )
    stored_rev = current_revision(conn)
    start = stored_rev or REVISIONS[found]
    script = script_directory()
    steps = [
        MigrationStep(s.revision, (s.doc or "").strip().splitlines()[0])
        for s in reversed(list(script.iterate_revisions(HEAD, start)))
        if s.revision != start
    ]
    stored_universe = DimensionUniverse.from_yaml(values["universe"])
    target_universe = DimensionUniverse.default().config.version
    report = MigrationReport(
        url=url,
        schema_from=found,
        schema_to=SCHEMA_VERSION,
        revision_from=stored_rev,
        revision_to=HEAD,
        universe_from=stored_universe.config.version,
        universe_to=max(stored_universe.config.version, target_universe),
        steps=steps,
        dry_run=dry_run,
    )
    return report, start


def migrate(url: str, *, dry_run: bool = False) -> MigrationReport:
    """Upgrade the registry at ``url`` to the schema of this software.

    Everything (stamping a pre-Alembic registry, each revision, the universe rewrite)
    runs in one transaction; on SQLite and PostgreSQL a failure leaves the registry as
    it was. MariaDB commits DDL statement by statement: back it up first.

    Parameters
    ----------
    url : str
        Registry URL (password from ``RC2_DB_PASSWORD`` if not in it).
    dry_run : bool
        Only say what would be done.

    Returns
    -------
    MigrationReport
        The versions found and the steps applied (or planned).
    """
    engine = make_engine_for_migration(url)
    shown = safe_url(url)
    try:
        with engine.begin() as conn:
            report, start = _plan(conn, shown, dry_run)
            if dry_run or report.up_to_date:
                return report
            from alembic import command

            if report.revision_from is None:
                _context(conn).stamp(script_directory(), start)
            command.upgrade(_config(conn), HEAD)
            if report.universe_from < report.universe_to:
                _upgrade_universe(conn, report.universe_to)
            dangling = backend(conn).dangling_references(conn)
            if dangling:
                raise SchemaVersionError(
                    f"migration of {shown} would leave rows pointing nowhere "
                    f"({'; '.join(dangling[:3])}); nothing was changed"
                )
    finally:
        engine.dispose()
    _log.info("migrated registry %s to schema %s", shown, SCHEMA_VERSION)
    return report


def _upgrade_universe(conn: sa.Connection, version: int) -> None:
    """Store the universe with ``version``'s explicit rules (read version-1 rules)."""
    meta = sa.Table("rc2_meta", sa.MetaData(), autoload_with=conn)
    text = conn.execute(sa.select(meta.c.value).where(meta.c.name == "universe")).scalar_one()
    universe = DimensionUniverse.from_yaml(text)
    upgraded = DimensionUniverse(universe.config.model_copy(update={"version": version}))
    conn.execute(meta.update().where(meta.c.name == "universe").values(value=upgraded.to_yaml()))


# --- helpers of the revisions -----------------------------------------------------------


def stored_universe(conn: sa.Connection) -> DimensionUniverse:
    """The dimension universe stored in the registry on ``conn``."""
    return DimensionUniverse.from_yaml(_read_meta(conn, "the registry")["universe"])


def set_schema_version(conn: sa.Connection, version: str) -> None:
    """Write ``version`` into ``rc2_meta`` (each revision ends with this)."""
    meta = sa.Table("rc2_meta", sa.MetaData(), autoload_with=conn)
    conn.execute(meta.update().where(meta.c.name == "schema_version").values(value=version))


def load_group_tables(conn: sa.Connection, schema: RegistrySchema) -> None:
    """Add every dataset group's ``tags_<n>`` / ``calibs_<n>`` definition to ``schema``."""
    grp = schema.dataset_group
    for gid, dims in conn.execute(sa.select(grp.c.group_id, grp.c.dimensions)):
        schema.group_tables(int(gid), tuple(dims.split(",")) if dims else ())


def rebuild_tables(conn: sa.Connection, tables: Iterable[sa.Table]) -> None:
    """Recreate ``tables`` at their current definition, keeping every row.

    Each table is copied aside (``CREATE TABLE ... AS SELECT``), dropped (dependents
    first), created from its definition (parents first) and refilled from the copy; the
    same SQL on every backend, and the result is exactly what a new registry gets.
    Identity columns continue after the largest kept value.
    """
    be = backend(conn)
    order = [t for t in tables]
    existing = set(sa.inspect(conn).get_table_names())
    order = [t for t in order if t.name in existing]
    for t in order:
        conn.exec_driver_sql(f"CREATE TABLE {_COPY_PREFIX}{t.name} AS SELECT * FROM {t.name}")
    for t in reversed(order):
        conn.exec_driver_sql(f"DROP TABLE {t.name}")
    for t in order:
        t.create(conn)
    for t in order:
        cols = ", ".join(c.name for c in t.columns)
        conn.exec_driver_sql(
            f"INSERT INTO {t.name} ({cols}) SELECT {cols} FROM {_COPY_PREFIX}{t.name}"
        )
        conn.exec_driver_sql(f"DROP TABLE {_COPY_PREFIX}{t.name}")
        for c in t.columns:
            if c.identity is not None:
                be.reset_identity(conn, t.name, c.name)


def upgrade_1_0_to_1_1(conn: sa.Connection) -> None:
    """Schema 1.0 -> 1.1 (revision ``schema_1_1``): see that revision's docstring.

    The target definitions are :class:`RegistrySchema`'s for version 1.1 (the frozen
    1.1 tables; schema 1.2 changed ``tags_<n>`` and ``file_datastore_records``).
    """
    schema = RegistrySchema(stored_universe(conn), version="1.1")
    load_group_tables(conn, schema)
    changed = {"dataset", "file_datastore_records", *schema.overlaps}
    changed |= {t.name for t in schema.all_tables() if t.name.startswith(("tags_", "calibs_"))}
    rebuild_tables(conn, [t for t in schema.all_tables() if t.name in changed])
    set_schema_version(conn, "1.1")


#: Tables whose foreign key to ``dataset`` schema 1.2 dropped (``tags_<n>`` by prefix).
_UNCHECKED_1_2 = ("file_datastore_records", "tags_")


def upgrade_1_1_to_1_2(conn: sa.Connection) -> None:
    """Schema 1.1 -> 1.2 (revision ``schema_1_2``): see that revision's docstring.

    Servers drop the foreign keys from ``tags_<n>`` and ``file_datastore_records`` to
    ``dataset`` by name (as the database reports them); SQLite, which changes
    constraints only by copying a table, rebuilds those tables with their rows.
    """
    schema = RegistrySchema(stored_universe(conn))
    load_group_tables(conn, schema)
    targets = [t for t in schema.all_tables() if t.name.startswith(_UNCHECKED_1_2)]
    be = backend(conn)
    if be.alters_by_rebuild:
        rebuild_tables(conn, targets)
    else:
        from alembic.operations import Operations

        ops = Operations(_context(conn))
        insp = sa.inspect(conn)
        existing = set(insp.get_table_names())
        for table in targets:
            if table.name not in existing:
                continue
            for fk in insp.get_foreign_keys(table.name):
                name = fk.get("name")
                if fk["referred_table"] == "dataset" and name:
                    ops.drop_constraint(name, table.name, type_="foreignkey")
    set_schema_version(conn, "1.2")
