"""Progress bars on stderr for long commands (rich is imported only when one is drawn).

Two shapes: :func:`progress_bar` for work reported as ``(stage, done, total)`` (the
simulator), and :func:`run_progress` for a RUN's quanta reported as counts per state
(``rc2 run``, ``rc2 restart``, ``rc2 submit --backend local``). Both yield ``None`` when
disabled (``--json``), so library calls simply get no callback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rc2_platform.cli.common import stderr

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["progress_bar", "run_progress"]

_FINAL = ("succeeded", "failed", "blocked")


def _bar(description_width: int) -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn(f"{{task.description:<{description_width}}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr(),
    )


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """One bar per stage, fed by a ``(stage, done, total)`` callback."""
    if not enabled:
        yield None
        return
    bar = _bar(13)
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done)

    with bar:
        yield update


def describe_counts(counts: Mapping[str, int]) -> str:
    """``quanta (3 failed, 12 blocked, 4 running)``: the states worth a look, zeros left out."""
    noted = [f"{counts[s]} {s}" for s in ("failed", "blocked", "running") if counts.get(s)]
    return "quanta" + (f" ({', '.join(noted)})" if noted else "")


@contextmanager
def run_progress(enabled: bool) -> Iterator[Callable[[Mapping[str, int]], None] | None]:
    """A bar of a RUN's quanta: finished of total, with failed/blocked/running counts."""
    if not enabled:
        yield None
        return
    bar = _bar(40)
    task = bar.add_task("quanta", total=None)

    def update(counts: Mapping[str, int]) -> None:
        done = sum(counts.get(s, 0) for s in _FINAL)
        bar.update(
            task, completed=done, total=sum(counts.values()), description=describe_counts(counts)
        )

    with bar:
        yield update
