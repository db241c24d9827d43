"""Local jobs of a Dagster step subprocess: forked from the step's main thread only.

A step subprocess runs Dagster's threads; a batched step's cluster threads must not fork
the step (a sibling thread may hold any lock), so they keep the fork-server launcher."""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")


def _launchers(queue: Any) -> None:
    from rc2_platform.defs.whole_graph_step import fork_in_step as _fork_in_step
    from rc2_platform.execution.execution_config import load_execution_config

    config = load_execution_config()
    out = {"packaged": config.backends.local.launcher}
    out["main thread"] = _fork_in_step(config).backends.local.launcher

    def in_thread() -> None:
        out["cluster thread"] = _fork_in_step(config).backends.local.launcher

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    queue.put(out)


def test_a_step_subprocess_forks_jobs_only_from_its_main_thread() -> None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_launchers, args=(queue,))
    child.start()
    out = queue.get(timeout=300)
    child.join()
    assert out == {"packaged": "forkserver", "main thread": "fork", "cluster thread": "forkserver"}
