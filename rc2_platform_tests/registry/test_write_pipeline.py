"""WritePipeline: ordered writes on one worker thread, failures raised, never left running."""

from __future__ import annotations

import threading

import pytest

from rc2_platform.registry._write_pipeline import WritePipeline


@pytest.mark.parametrize("threaded", [True, False])
def test_writes_run_in_order_on_one_thread(threaded: bool) -> None:
    done: list[tuple[int, str]] = []
    with WritePipeline(threaded=threaded) as pipeline:
        for i in range(20):
            pipeline.submit(lambda i=i: done.append((i, threading.current_thread().name)))
    assert [i for i, _ in done] == list(range(20))
    names = {name for _, name in done}
    assert len(names) == 1
    assert (names.pop() == threading.current_thread().name) is not threaded


@pytest.mark.parametrize("threaded", [True, False])
def test_a_failed_write_skips_the_rest_and_is_raised(threaded: bool) -> None:
    done: list[int] = []

    def fail() -> None:
        raise RuntimeError("insert refused")

    with (
        pytest.raises(RuntimeError, match="insert refused"),
        WritePipeline(threaded=threaded) as pipeline,
    ):
        pipeline.submit(lambda: done.append(1))
        pipeline.submit(fail)
        pipeline.submit(lambda: done.append(3))
    assert done == [1]


def test_an_error_in_the_caller_waits_for_the_running_write() -> None:
    """The connection is never handed back while the worker still writes on it."""
    started, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def slow_write() -> None:
        started.set()
        release.wait()
        finished.append("slow")

    with pytest.raises(KeyError), WritePipeline() as pipeline:
        pipeline.submit(slow_write)
        pipeline.submit(lambda: finished.append("queued behind"))
        started.wait()
        threading.Timer(0.05, release.set).start()
        raise KeyError("building rows failed")
    # The running write was waited for; the one queued behind it never ran.
    assert finished == ["slow"]
