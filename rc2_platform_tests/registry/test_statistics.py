"""Planner statistics are refreshed for every table, including the dynamic tags tables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rc2_platform.registry import DatasetType, Registry
from rc2_platform_tests.databases import scratch_database


@pytest.fixture
def pg_registry(tmp_path: Path) -> Iterator[Registry]:
    with scratch_database("postgresql", tmp_path) as url:
        registry = Registry.create(url)
        try:
            yield registry
        finally:
            registry.close()


def test_never_analyzed_tables_are_analyzed_before_a_build(pg_registry: Registry) -> None:
    reg = pg_registry
    reg.insert_dimension_records(
        "instrument",
        [{"instrument": "HSC", "visit_max": 10**8, "detector_max": 200, "class_name": "x"}],
    )
    reg.insert_dimension_records(
        "detector", [{"instrument": "HSC", "detector": d, "full_name": f"d{d}"} for d in range(50)]
    )
    reg.register_run("run")
    dt = DatasetType("bias_like", ("instrument", "detector"), "Exposure")
    reg.register_dataset_type(dt)
    reg.insert_datasets(dt, [{"instrument": "HSC", "detector": d} for d in range(50)], "run")

    import sqlalchemy as sa

    refreshed = reg.refresh_statistics()
    tags = [name for name in refreshed if name.startswith("tags_")]
    assert tags and "detector" in refreshed
    with reg.engine.connect() as conn:
        reltuples = conn.execute(
            sa.text("SELECT reltuples FROM pg_class WHERE relname = :t"), {"t": tags[0]}
        ).scalar()
    # The planner now knows the table's size instead of guessing.
    assert reltuples == 50


def test_analyze_default_covers_tables_this_process_never_loaded(pg_registry: Registry) -> None:
    import sqlalchemy as sa

    reg = pg_registry
    reg.register_run("run")
    reg.insert_dimension_records(
        "instrument",
        [{"instrument": "HSC", "visit_max": 10**8, "detector_max": 200, "class_name": "x"}],
    )
    dt = DatasetType("flat_like", ("instrument",), "Exposure")
    reg.register_dataset_type(dt)
    reg.insert_datasets(dt, [{"instrument": "HSC"}], "run")
    url = reg.engine.url
    other = Registry.open(url)
    try:
        other.analyze()
        with other.engine.connect() as conn:
            never = conn.execute(
                sa.text(
                    "SELECT relname FROM pg_stat_user_tables WHERE n_live_tup > 0 "
                    "AND last_analyze IS NULL AND relname LIKE 'tags_%'"
                )
            ).all()
        assert never == []
    finally:
        other.close()


def test_a_large_registration_is_analyzed_beside_the_writer(tmp_path: Path) -> None:
    """PostgreSQL: the ANALYZE after >= 10,000 rows runs on its own connection; close waits."""
    import sqlalchemy as sa

    n = 10_000
    with scratch_database("postgresql", tmp_path) as url:
        reg = Registry.create(url)
        try:
            reg.insert_dimension_records(
                "instrument",
                [{"instrument": "HSC", "visit_max": 10**8, "detector_max": n, "class_name": "x"}],
            )
            reg.insert_dimension_records(
                "detector", [{"instrument": "HSC", "detector": d} for d in range(n)]
            )
            reg.register_run("run")
            dt = DatasetType("big_like", ("instrument", "detector"), "Exposure")
            reg.register_dataset_type(dt)
            reg.insert_datasets(dt, [{"instrument": "HSC", "detector": d} for d in range(n)], "run")
        finally:
            reg.close()  # waits for the background ANALYZE
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                reltuples = conn.execute(
                    sa.text("SELECT reltuples FROM pg_class WHERE relname = 'dataset'")
                ).scalar()
        finally:
            engine.dispose()
    assert reltuples == n  # analyzed (a never-analyzed table says -1)


def test_background_maintenance_runs_in_its_own_thread_and_close_waits_for_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import threading

    import sqlalchemy as sa

    from rc2_platform.registry._connections import Connections

    connections = Connections(sa.create_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}"), lambda: None)
    release, seen = threading.Event(), []

    def task() -> None:
        release.wait()
        seen.append(threading.get_ident())

    connections.beside("test", task)
    connections.beside("broken", lambda: 1 / 0)  # type: ignore[func-returns-value]
    release.set()
    connections.close()
    assert seen and seen[0] != threading.get_ident()
    assert "registry maintenance broken failed: division by zero" in caplog.text
