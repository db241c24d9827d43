"""Two creators racing to make the schema in one empty database: no crash, one registry.

What two ``rc2 bootstrap`` runs started together on an empty PostgreSQL database do
first; the second waits for the first's schema, finds it and opens it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from rc2_platform.butler import Butler
from rc2_platform.errors import Rc2Error
from rc2_platform_tests.databases import scratch_database
from rc2_platform_tests.hostile.conftest import tally


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
@pytest.mark.parametrize("attempt", range(3))
def test_racing_creations_both_end_with_one_registry(
    tmp_path: Path, backend: str, attempt: int
) -> None:
    with scratch_database(backend, tmp_path) as url:
        root = tmp_path / "repo"
        barrier = threading.Barrier(2)
        outcomes: list[BaseException | None] = [None, None]

        def create(i: int) -> None:
            barrier.wait()
            try:
                Butler.create(root, None if backend == "sqlite" else url, exist_ok=True).close()
            except BaseException as exc:  # noqa: BLE001 - counted and asserted below
                outcomes[i] = exc

        threads = [threading.Thread(target=create, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        crashed = [e for e in outcomes if e is not None and not isinstance(e, Rc2Error)]
        tally("traceback" if crashed else "clean")
        assert not crashed, crashed
        with Butler(root) as butler:
            assert butler.registry.query_collections() == []
