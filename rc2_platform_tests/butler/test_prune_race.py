"""Two ``rc2 prune-datasets`` of the same datasets at once: each reports what it removed.

Before, both reported the full count (each counted what it had found). Now the rows are
locked before they are deleted: the second waits for the first, finds them gone, reports
0 removed and the rest ``already_removed``, and exits 0.

The interleaving is forced, not timed: this process prunes inside an open transaction;
a second process (the real ``rc2 prune-datasets``) finds the same datasets and starts its
removal, observed through an SQLAlchemy event hook that writes a marker file just before
its removal's first statement that waits (SQLite: ``BEGIN IMMEDIATE``; the servers:
``SELECT ... FOR UPDATE``, or a ``DELETE`` if the rows were not locked first) — on the
servers the test also waits until the database shows that statement waiting for a lock.
Only then does this process commit. (A guard of minutes turns a hang into a failure; no
assertion depends on how long anything takes.)
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from rc2_platform.admin import prune_datasets
from rc2_platform.butler import Butler
from rc2_platform_tests.butler.conftest import RUN, count_rows, dataset_files, populate
from rc2_platform_tests.databases import scratch_database

#: The second process: the real CLI, with a hook that marks when its removal starts.
CHILD = r"""
import sys
from pathlib import Path

import sqlalchemy as sa

marker = Path(sys.argv[1])
queried = []


def hook(conn, cursor, statement, parameters, context, executemany):
    text = " ".join(statement.split())
    if text.startswith("SELECT") and "FOR UPDATE" not in text:
        queried.append(text)  # the query phase: finding the datasets
    elif queried and not marker.exists() and (
        text.startswith(("BEGIN IMMEDIATE", "DELETE")) or "FOR UPDATE" in text
    ):
        marker.write_text(text)


sa.event.listen(sa.engine.Engine, "before_cursor_execute", hook)
from rc2_platform.cli import main

main(sys.argv[2:])
"""

N_SUMMARIES = 4
#: Turns a hang (the second prune blocked on this process, which waits for it) into a
#: failure; nothing asserts how long a step takes.
GUARD_SECONDS = 240


def _waiting_for_a_lock(url: str, backend: str) -> bool:
    """Whether a session of the test database waits for a row lock (the second prune)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            if backend == "postgresql":
                query = (
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            else:
                query = "SELECT count(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'"
            return int(conn.execute(sa.text(query)).scalar_one()) > 0
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mariadb"])
def test_concurrent_prunes_each_report_what_they_removed(tmp_path: Path, backend: str) -> None:
    with scratch_database(backend, tmp_path) as url:
        root = tmp_path / "repo"
        with Butler.create(root, None if backend == "sqlite" else url) as b:
            populate(b.registry)
            for visit in (1, 2):
                for detector in (0, 1):
                    data_id = {"instrument": "HSC", "visit": visit, "detector": detector}
                    b.put({"v": visit}, "summary", data_id, run=RUN)
            assert len(dataset_files(root)) == N_SUMMARIES
        marker = tmp_path / "second_prune_removing"
        args = ["prune-datasets", str(root), "-c", RUN, "-d", "summary", "--format", "csv"]
        with Butler(root) as first:
            with first.transaction():  # held open until the second prune waits on it
                mine = prune_datasets(first, [RUN], dataset_types=["summary"])
                assert len(mine.refs) == N_SUMMARIES and mine.already_removed == []
                second = subprocess.Popen(
                    [sys.executable, "-c", CHILD, str(marker), *args],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                guard = time.monotonic() + GUARD_SECONDS
                while not marker.exists() and second.poll() is None:
                    assert time.monotonic() < guard, "the second prune never started removing"
                    time.sleep(0.02)  # a pause between looks
                assert marker.exists(), second.communicate()
                while backend != "sqlite" and not _waiting_for_a_lock(url, backend):
                    assert second.poll() is None, second.communicate()
                    assert time.monotonic() < guard, "the second prune never waited for a lock"
                    time.sleep(0.02)
            out, err = second.communicate(timeout=300)
            assert count_rows(first, "dataset") == 0
        assert second.returncode == 0, err
        assert list(csv.DictReader(io.StringIO(out))) == [
            {"dataset_type": "summary", "run": RUN, "datasets": "0", "already_removed": "4"}
        ], err
        assert err.strip() == (
            "4 dataset(s) found were already removed by another removal (e.g. a concurrent "
            "prune-datasets) before this one; nothing left to do for them"
        )
        assert dataset_files(root) == []


def test_removal_returns_only_what_it_removed(tmp_path: Path) -> None:
    """``Butler.remove`` of datasets another butler removed in between: only the rest are
    removed and returned, no error; again: nothing."""
    root = tmp_path / "repo"
    with Butler.create(root) as b:
        populate(b.registry)
        for detector in (0, 1):
            data_id = {"instrument": "HSC", "visit": 1, "detector": detector}
            b.put({"d": detector}, "summary", data_id, run=RUN)
        found = prune_datasets(b, [RUN], dry_run=True).refs
        assert len(found) == 2
        with Butler(root) as other:
            assert len(other.remove(found[:1])) == 1
        assert b.remove(found) == found[1:]
        assert b.remove(found) == []
        assert dataset_files(root) == []
