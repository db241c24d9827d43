"""SQLite WAL checkpoints run beside the writer, not inside its commit."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlalchemy as sa

from rc2_platform.butler import Butler
from rc2_platform.registry._connections import Connections
from rc2_platform.registry._dialect import backend
from rc2_platform.registry._wal_checkpoint import (
    AUTO_CHECKPOINT_PAGES,
    CHECKPOINT_BYTES,
    WalCheckpointer,
)


def _wal_database(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # only an explicit checkpoint copies
    conn.execute("CREATE TABLE t (x BLOB)")
    return conn


def _write(conn: sqlite3.Connection, nbytes: int) -> None:
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t VALUES (?)", [(b"x" * 1000,)] * (nbytes // 1000))
    conn.execute("COMMIT")


def test_a_big_wal_is_copied_back_by_a_background_checkpoint(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite3"
    conn = _wal_database(db)
    _write(conn, 2 * CHECKPOINT_BYTES)
    before = db.stat().st_size
    checkpointer = WalCheckpointer(db)
    checkpointer.after_commit()
    checkpointer.close()  # waits for the checkpoint it started
    assert db.stat().st_size > before + CHECKPOINT_BYTES  # the pages are in the database
    # A fresh reader sees every row (from the file or the WAL alike).
    assert sqlite3.connect(db).execute("SELECT count(*) FROM t").fetchone()[0] == (
        2 * CHECKPOINT_BYTES // 1000
    )
    conn.close()


def test_a_small_wal_is_left_for_later(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite3"
    conn = _wal_database(db)
    _write(conn, CHECKPOINT_BYTES // 4)
    before = db.stat().st_size
    checkpointer = WalCheckpointer(db)
    checkpointer.after_commit()
    checkpointer.close()
    assert db.stat().st_size == before
    conn.close()


def test_a_vanished_repository_does_not_break_the_checkpointer(tmp_path: Path) -> None:
    checkpointer = WalCheckpointer(tmp_path / "gone" / "r.sqlite3")
    checkpointer.after_commit()  # no WAL: nothing to do, nothing raised
    checkpointer.close()
    # A WAL left without its database: the checkpoint never creates an empty one.
    db = tmp_path / "r.sqlite3"
    Path(f"{db}-wal").write_bytes(b"\0" * (CHECKPOINT_BYTES + 1))
    checkpointer = WalCheckpointer(db)
    checkpointer.after_commit()
    checkpointer.close()
    assert not db.exists()


def test_registry_connections_raise_the_automatic_threshold_and_checkpoint_after_commit(
    tmp_path: Path,
) -> None:
    with Butler.create(tmp_path / "repo") as butler:
        engine = butler.registry.engine
        with engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert pages == AUTO_CHECKPOINT_PAGES
        assert backend(engine).wal_checkpointer(engine) is not None
    db = tmp_path / "repo" / "registry.sqlite3"
    # Another connection stays open: closing ours is then not the last close, which
    # would checkpoint by itself.
    keep = sqlite3.connect(db)
    keep.execute("SELECT count(*) FROM sqlite_master").fetchone()
    connections = Connections(butler.registry.engine, on_rollback=lambda: None)
    try:
        with connections.transaction() as conn:
            conn.exec_driver_sql("CREATE TABLE big (x BLOB)")
            conn.exec_driver_sql(
                "INSERT INTO big SELECT randomblob(1000) FROM "
                "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6000) "
                "SELECT i FROM n)"
            )
        before = db.stat().st_size
    finally:
        connections.close()  # waits for the checkpoint the commit started
    assert before < 6_000_000 < db.stat().st_size
    keep.close()


def _checkpointer(url: str) -> WalCheckpointer | None:
    return backend(sa.create_engine(url)).wal_checkpointer(sa.create_engine(url))


def test_read_only_and_memory_engines_get_no_checkpointer(tmp_path: Path) -> None:
    assert _checkpointer("sqlite://") is None
    assert _checkpointer("postgresql+psycopg://x@h/db") is None
    url = f"sqlite:///file:{tmp_path / 'r.sqlite3'}?mode=ro&uri=true"
    assert _checkpointer(url) is None
