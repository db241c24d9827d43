"""Dagster instance on the real PostgreSQL server, configured by ``deploy/dagster.yaml``.

The production instance config is copied into a temporary ``DAGSTER_HOME`` with the
``DAGSTER_PG_*`` variables pointing at a throw-away database; the ingest assets run through
that instance and the run, its events and the tract partitions are then read back both
through Dagster's API and straight from the PostgreSQL tables.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from rc2_platform.defs.ingest_assets import instrument, raws, skymap
from rc2_platform.defs.resources import ButlerResource, SurveyResource
from rc2_platform.simulate import SimulationResult
from rc2_platform_tests.databases import scratch_database

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")

REPO_TOP = Path(__file__).resolve().parents[2]
DEPLOY_CONFIG = REPO_TOP / "deploy" / "dagster.yaml"
TRACT = "9813"
PARTITION = f"g|{TRACT}"
#: The driver dagster-postgres is written for (it formats ``NOTIFY run_events, %(id)s``
#: client-side, which psycopg 3's server-side binding rejects).
PG_SCHEME = "postgresql+psycopg2"


def write_deploy_home(home: Path, port: int) -> Path:
    """Copy ``deploy/dagster.yaml`` into ``home``, changing only what a test server needs.

    The deploy file hard-codes PostgreSQL's standard port 5432; a test server reached
    through ``RC2_TEST_POSTGRES_URL`` may listen elsewhere, so only the port is rewritten
    (and only when it differs). Everything else (storage, queued run coordinator with its
    limits, default run launcher, run monitoring and retries) is used as shipped: the
    in-process execution below never hands the run to the coordinator or the launcher, so
    neither needs the daemon here.
    """
    config = yaml.safe_load(DEPLOY_CONFIG.read_text())
    if port != 5432:
        config["storage"]["postgres"]["postgres_db"]["port"] = port
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return home


@pytest.fixture
def pg_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A DAGSTER_HOME using deploy's PostgreSQL storage on a fresh database, and its URL."""
    with scratch_database("postgresql", tmp_path) as url:
        parsed = sa.make_url(url)
        monkeypatch.setenv("DAGSTER_PG_HOST", parsed.host or "127.0.0.1")
        monkeypatch.setenv("DAGSTER_PG_USER", parsed.username or "postgres")
        monkeypatch.setenv("DAGSTER_PG_PASSWORD", parsed.password or "")
        monkeypatch.setenv("DAGSTER_PG_DB", parsed.database or "")
        home = write_deploy_home(tmp_path / "dagster_home", parsed.port or 5432)
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        yield home, url


def test_deploy_config_selects_the_psycopg2_driver() -> None:
    """SQLAlchemy 2.1 maps a bare ``postgresql://`` URL to psycopg 3, not psycopg2.

    dagster-postgres 0.29 builds ``postgresql://...`` unless ``postgres_db.scheme`` says
    otherwise, and its event-log writes then fail on psycopg 3 with ``syntax error at or
    near "$1"`` (``NOTIFY run_events, $1``): the first run on the production instance dies.
    """
    db = yaml.safe_load(DEPLOY_CONFIG.read_text())["storage"]["postgres"]["postgres_db"]
    assert db.get("scheme") == PG_SCHEME, (
        f"{DEPLOY_CONFIG}: set storage.postgres.postgres_db.scheme to {PG_SCHEME!r} "
        "(SQLAlchemy 2.1 defaults postgresql:// to psycopg 3, which dagster-postgres's "
        "NOTIFY statement does not support)"
    )


def _materialization_rows(url: str, run_id: str) -> list[tuple[str, str | None]]:
    """(asset key, partition) of every materialization event of ``run_id``, from SQL."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT asset_key, partition FROM event_logs "
                    "WHERE run_id = :r AND dagster_event_type = 'ASSET_MATERIALIZATION'"
                ),
                {"r": run_id},
            ).all()
    finally:
        engine.dispose()
    return [(".".join(json.loads(key)), part) for key, part in rows]


def _run_rows(url: str) -> dict[str, tuple[str, str]]:
    """run_id → (job name, status) of every run in the ``runs`` table."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT run_id, pipeline_name, status FROM runs")).all()
    finally:
        engine.dispose()
    return {run_id: (name, status) for run_id, name, status in rows}


def test_deploy_instance_on_postgresql_records_runs_events_and_partitions(
    pg_home: tuple[Path, str], tiny_survey: SimulationResult, tmp_path: Path
) -> None:
    home, url = pg_home
    resources = {
        "butler": ButlerResource(repo=str(tmp_path / "repo")),
        "survey": SurveyResource(bootstrap_config=str(tiny_survey.bootstrap)),
    }
    instance = dg.DagsterInstance.get()
    try:
        # The instance really is deploy's: PostgreSQL storages and the queued coordinator.
        assert instance.root_directory == str(home)
        for storage in (
            instance.run_storage,
            instance.event_log_storage,
            instance.schedule_storage,
        ):
            assert type(storage).__module__.startswith("dagster_postgres"), type(storage)
        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "TractRunCoordinator"
        assert isinstance(coordinator, dg.QueuedRunCoordinator)
        concurrency = instance.get_concurrency_config()
        queue = concurrency.run_queue_config
        assert queue is not None and queue.max_concurrent_runs == 8
        assert {limit["key"] for limit in queue.tag_concurrency_limits} == {
            "dagster/backfill",
            "rc2/tract",
        }
        assert concurrency.pool_config.default_pool_limit == 4

        first = dg.materialize([instrument, skymap], instance=instance, resources=resources)
        assert first.success
        second = dg.materialize(
            [raws], partition_key=PARTITION, instance=instance, resources=resources
        )
        assert second.success

        # Through Dagster's API, as the webserver and daemon would read it back.
        for result in (first, second):
            record = instance.get_run_by_id(result.run_id)
            assert record is not None and record.status == dg.DagsterRunStatus.SUCCESS
        assert instance.get_dynamic_partitions("tracts") == [TRACT]
        latest = instance.get_latest_materialization_event(dg.AssetKey("raws"))
        assert latest is not None and latest.run_id == second.run_id
        mat = latest.asset_materialization
        assert mat is not None and mat.partition == PARTITION
        assert int(mat.metadata["ingested"].value) > 0  # type: ignore[arg-type]
    finally:
        instance.dispose()

    # Straight from the PostgreSQL tables: the rows are really on the server.
    runs = _run_rows(url)
    assert runs[first.run_id] == (first.dagster_run.job_name, "SUCCESS")
    assert runs[second.run_id] == (second.dagster_run.job_name, "SUCCESS")
    assert sorted(_materialization_rows(url, first.run_id)) == [
        ("instrument", None),
        ("skymap", None),
    ]
    assert _materialization_rows(url, second.run_id) == [("raws", PARTITION)]
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tracts = conn.execute(
                sa.text(
                    "SELECT partition FROM dynamic_partitions WHERE partitions_def_name = 'tracts'"
                )
            ).scalars()
            assert list(tracts) == [TRACT]
    finally:
        engine.dispose()
