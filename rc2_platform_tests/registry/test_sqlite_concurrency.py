"""Two processes writing one SQLite registry wait for each other instead of failing."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from rc2_platform.registry import Registry


def _register_runs(url: str, prefix: str, n: int) -> None:
    registry = Registry.open(url)
    try:
        for i in range(n):
            with registry.transaction():
                # A read, then writes, in one transaction: the pattern that fails with a
                # deferred BEGIN when the other process commits in between.
                registry.query_collections()
                time.sleep(0.01)  # let the other process commit between our read and write
                registry.register_run(f"{prefix}/{i}")
    finally:
        registry.close()


def test_concurrent_writers_on_sqlite_both_complete(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    Registry.create(url).close()
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_register_runs, args=(url, f"w{k}", 30)) for k in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    registry = Registry.open(url)
    try:
        assert len(registry.query_collections()) == 60
    finally:
        registry.close()
