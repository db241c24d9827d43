"""Schema migrations: registries written at schema 1.0 and 1.1 are upgraded by ``rc2 migrate``.

The 1.0 registry is built by the frozen 1.0 schema code (``schema_1_0.py``), the 1.1 one
by ``RegistrySchema(version="1.1")`` (the definitions the 1.0 -> 1.1 revision creates),
on every backend, and filled with the rows a populated registry holds; after the
migration the same queries give the same answers and the tables are exactly those of a
new registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from rc2_platform.butler import Butler
from rc2_platform.cli import main
from rc2_platform.core.dataset_types import CollectionType
from rc2_platform.errors import MigrationRequiredError
from rc2_platform.registry import DimensionUniverse, Registry, Timespan
from rc2_platform.registry._dialect import backend
from rc2_platform.registry._migrate import HEAD, REVISIONS, VERSION_TABLE
from rc2_platform.registry.schema import SCHEMA_VERSION, RegistrySchema
from rc2_platform_tests.move_fixtures import populate, snapshot
from rc2_platform_tests.registry import schema_1_0


def version_1_universe() -> str:
    """The default universe as a version-1 document (no always_join, no families)."""
    data = yaml.safe_load(DimensionUniverse.default().to_yaml())
    data["version"] = 1
    data.pop("spatial_families", None)
    for el in data["elements"]:
        el.pop("always_join", None)
    return yaml.safe_dump(data, sort_keys=False)


def build_old(url: str, scratch: Path, version: str = "1.0") -> dict[str, Any]:
    """Write a populated registry at schema ``version`` at ``url``; return its snapshot.

    1.0: tables of the frozen 1.0 code, a version-1 universe, no Alembic table (as
    releases before Alembic left it). 1.1: the 1.1 tables, the current universe, stamped
    ``schema_1_1``.
    """
    src = Registry.create(f"sqlite:///{scratch / 'source.sqlite3'}")
    populate(src)
    snap = snapshot(src)
    if version == "1.0":
        universe_text = version_1_universe()
        old: Any = schema_1_0.RegistrySchema(DimensionUniverse.from_yaml(universe_text))
    else:
        universe_text = src.universe.to_yaml()
        old = RegistrySchema(src.universe, version=version)
    engine = sa.create_engine(url)
    with src.engine.connect() as sconn, engine.begin() as conn:
        grp = src.schema.dataset_group
        for gid, dims in sconn.execute(sa.select(grp.c.group_id, grp.c.dimensions)):
            old.group_tables(gid, tuple(dims.split(",")))
            src.schema.group_tables(gid, tuple(dims.split(",")))
        old.metadata.create_all(conn)
        for table in old.all_tables():
            rows = [
                dict(r)
                for r in sconn.execute(sa.select(src.schema.metadata.tables[table.name])).mappings()
            ]
            if rows:
                conn.execute(table.insert(), rows)
            for column in table.columns:  # as an old release left them: ids continue
                if column.identity is not None:
                    backend(conn).reset_identity(conn, table.name, column.name)
        conn.execute(
            old.meta.update().where(old.meta.c.name == "schema_version").values(value=version)
        )
        conn.execute(
            old.meta.update().where(old.meta.c.name == "universe").values(value=universe_text)
        )
        if version != "1.0":
            conn.execute(  # as Alembic creates it
                sa.text(
                    f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
                    "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
                )
            )
            conn.execute(sa.text(f"INSERT INTO {VERSION_TABLE} VALUES ('{REVISIONS[version]}')"))
    engine.dispose()
    src.close()
    return snap


def build_1_0(url: str, scratch: Path) -> dict[str, Any]:
    """Write a populated schema-1.0 registry at ``url``; return the snapshot of its content."""
    return build_old(url, scratch, "1.0")


def layout(url: str) -> dict[str, Any]:
    """Tables, columns, keys and indexes as the database reports them."""
    engine = sa.create_engine(url)
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        insp = sa.inspect(conn)
        for name in sorted(insp.get_table_names()):
            if name.startswith("sqlite_"):
                continue
            out[name] = {
                "columns": sorted(c["name"] for c in insp.get_columns(name)),
                "pk": insp.get_pk_constraint(name)["constrained_columns"],
                "fks": sorted(
                    (f["referred_table"], tuple(f["constrained_columns"]))
                    for f in insp.get_foreign_keys(name)
                ),
                "unique": sorted(
                    tuple(u["column_names"]) for u in insp.get_unique_constraints(name)
                ),
                "indexes": sorted(
                    tuple(i["column_names"]) for i in insp.get_indexes(name) if not i.get("unique")
                ),
            }
    engine.dispose()
    return out


#: Schema versions a registry is migrated from, and the revisions that migration applies.
STARTS = {"1.0": ["schema_1_1", "schema_1_2"], "1.1": ["schema_1_2"]}


@pytest.fixture(params=sorted(STARTS))
def old_registry(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[str, dict[str, Any], str]:
    """A populated registry at an old schema (URL), the snapshot of its content, the version."""
    return db_url, build_old(db_url, tmp_path, request.param), request.param


def test_opening_an_old_registry_says_to_run_migrate(
    old_registry: tuple[str, Any, str],
) -> None:
    url, _, version = old_registry
    with pytest.raises(MigrationRequiredError, match=rf"schema version {version}.*rc2 migrate"):
        Registry.open(url)


def test_dry_run_plans_and_changes_nothing(old_registry: tuple[str, Any, str]) -> None:
    url, _, version = old_registry
    report = Registry.migrate(url, dry_run=True)
    assert (report.schema_from, report.schema_to) == (version, SCHEMA_VERSION)
    assert [s.revision for s in report.steps] == STARTS[version]
    assert (report.universe_from, report.universe_to) == (1 if version == "1.0" else 2, 2)
    with pytest.raises(MigrationRequiredError):
        Registry.open(url)


def test_migrated_registry_answers_the_same_and_has_the_new_layout(
    old_registry: tuple[str, Any, str], tmp_path: Path
) -> None:
    url, before, version = old_registry
    report = Registry.migrate(url)
    assert report.revision_from == (None if version == "1.0" else REVISIONS[version])
    assert report.revision_to == HEAD
    reg = Registry.open(url)
    try:
        assert snapshot(reg) == before
        assert reg.universe.config.version == 2
        with reg.engine.connect() as conn:
            assert (
                conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == HEAD
            )
        # New writes work: a calibration id continues after the kept ones.
        bias = reg.query_datasets("bias", "HSC/runs/a")
        reg.certify("HSC/calib", bias[1:], Timespan(5000, 6000))
        reg.register_collection("HSC/more", CollectionType.TAGGED)
        reg.associate("HSC/more", bias)
        # Removal deletes tags rows and file records explicitly (no cascade since 1.2).
        reg.remove_collection("HSC/best", unlink_from_chains=True)
        reg.remove_collection("HSC/runs/a", unlink_from_chains=True)
        with reg.engine.connect() as conn:
            assert not conn.execute(sa.text("SELECT * FROM file_datastore_records")).all()
            for table in sa.inspect(conn).get_table_names():
                if table.startswith("tags_"):
                    orphans = conn.execute(
                        sa.text(
                            f"SELECT dataset_id FROM {table} WHERE dataset_id NOT IN "
                            "(SELECT dataset_id FROM dataset)"
                        )
                    ).all()
                    assert not orphans, table
    finally:
        reg.close()
    assert Registry.migrate(url).up_to_date
    if url.startswith("sqlite"):  # servers: the next test, against the same server
        fresh_url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        fresh = Registry.create(fresh_url)
        populate(fresh)
        fresh.close()
        assert layout(url) == layout(fresh_url)


def test_layout_after_migration_equals_new_registry_on_servers(
    old_registry: tuple[str, Any, str], tmp_path: Path
) -> None:
    """Same check on PostgreSQL and MariaDB, against a new registry on the same server."""
    url, _, _ = old_registry
    if url.startswith("sqlite"):
        pytest.skip("SQLite: compared in the test above")
    Registry.migrate(url)
    from rc2_platform_tests.databases import scratch_database

    backend = "postgresql" if url.startswith("postgresql") else "mariadb"
    with scratch_database(backend, tmp_path) as fresh_url:
        fresh = Registry.create(fresh_url)
        populate(fresh)
        fresh.close()
        assert layout(url) == layout(fresh_url)


def test_registry_from_before_alembic_at_current_version_is_stamped(db_url: str) -> None:
    reg = Registry.create(db_url)
    with reg.engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))
    reg.close()
    Registry.open(db_url).close()  # still opens: rc2_meta says the current version
    report = Registry.migrate(db_url)
    assert report.revision_from is None and not report.steps
    assert Registry.migrate(db_url).up_to_date


def test_cli_migrate(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    Butler.create(root).close()
    (root / "registry.sqlite3").unlink()
    build_1_0(f"sqlite:///{root / 'registry.sqlite3'}", tmp_path)
    runner = CliRunner()
    opened = runner.invoke(
        main, ["query-datasets", str(root), "calexp", "--collections", "HSC/runs/a"]
    )
    assert opened.exit_code == 1
    assert f"rc2 migrate {root}" in opened.output
    dry = runner.invoke(main, ["migrate", str(root), "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.stdout)
    assert plan["dry_run"] and [s["revision"] for s in plan["steps"]] == STARTS["1.0"]
    done = runner.invoke(main, ["migrate", str(root)])
    assert done.exit_code == 0, done.output
    assert f"1.0 -> {SCHEMA_VERSION}" in done.output
    with Butler(root) as butler:
        assert len(butler.query_datasets("calexp", collections="HSC/runs/a")) == 4
