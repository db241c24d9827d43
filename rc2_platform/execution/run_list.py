"""The RUNs a repository has executed, with their state, counts, start and end.

Read from each run's journal (``REPO/_runs/<run>/journal.jsonl``, see
:mod:`rc2_platform.execution.journal`) only, so listing works while runs execute
elsewhere and after their orchestrators are gone. ``rc2 runs`` prints this; ``rc2
report`` without a RUN reports the newest one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rc2_platform.execution.journal import RUNS_DIR, Journal
from rc2_platform.execution.quantum_state import QuantumState

__all__ = ["RunInfo", "list_runs", "newest_run"]

_COUNTED = (QuantumState.SUCCEEDED, QuantumState.FAILED, QuantumState.BLOCKED)


@dataclass
class RunInfo:
    """One executed RUN as its journal tells it.

    Attributes
    ----------
    run : str
        The RUN collection.
    status : str
        A :class:`~rc2_platform.execution.attempts.RunStatus` value: ``succeeded``,
        ``failed``, ``cancelled``, ``aborted``, ``running``, ``submitted`` (handed to
        DAGMan) or ``interrupted`` (no end recorded and the orchestrator is gone), as
        ``rc2 report`` judges it.
    quanta : int
        Quanta in the graph.
    counts : dict[str, int]
        Quanta per state (``succeeded``, ``failed``, ``blocked``, ``pending``...).
    started, ended : float or None
        Unix seconds of the first start and of the last end (None while running).
    last_started : float or None
        Unix seconds of the latest start.
    starts : int
        How many times it was started (1 + restarts / resumes).
    backend : str
        Backend of the latest start.
    graph : str
        Graph file of the latest start.
    """

    run: str
    status: str
    quanta: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    started: float | None = None
    ended: float | None = None
    last_started: float | None = None
    starts: int = 0
    backend: str = ""
    graph: str = ""

    def to_row(self) -> dict[str, Any]:
        """Plain data for tables and JSON (times as ISO 8601 UTC)."""
        return {
            "run": self.run,
            "status": self.status,
            "quanta": self.quanta,
            **{state.value: self.counts.get(state.value, 0) for state in _COUNTED},
            "pending": max(self.quanta - sum(self.counts.get(s.value, 0) for s in _COUNTED), 0),
            "started": _iso(self.started),
            "ended": _iso(self.ended),
            "starts": self.starts,
            "backend": self.backend,
        }


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_run(journal: Journal) -> RunInfo | None:
    """The :class:`RunInfo` of one journal (None if it records no start)."""
    info: RunInfo | None = None
    finished = False
    for event in journal.events():
        kind = event.get("event")
        if kind == "run_started":
            if info is None:
                info = RunInfo(str(event.get("run", "")), "running")
                info.started = float(event["time"])
            finished = False
            info.last_started = float(event["time"])
            info.starts += 1
            info.quanta = int(event.get("n_quanta", 0))
            info.backend, info.graph = str(event.get("backend", "")), str(event.get("graph", ""))
        elif kind == "run_finished" and info is not None:
            finished, info.ended = True, float(event["time"])
            info.status = str(event.get("status", "unknown"))
            info.counts = {str(k): int(v) for k, v in (event.get("counts") or {}).items()}
    if info is None:
        return None
    if not finished:
        _unfinished(journal, info)
    return info


def _unfinished(journal: Journal, info: RunInfo) -> None:
    """State and counts of a run without a recorded end, as ``rc2 report`` judges them.

    The report tells a live orchestrator (or DAGMan) from a dead one by the RUN lock
    and replays the job records for the quantum states.
    """
    from rc2_platform.execution.report import build_report

    info.ended = None
    report = build_report(journal.directory.parent.parent, info.run)
    info.status = report.status
    info.counts = {}
    for states in report.tasks.values():
        for state, n in states.items():
            info.counts[state] = info.counts.get(state, 0) + int(n)


def list_runs(repo: str | Path) -> list[RunInfo]:
    """Every RUN executed from ``repo``, oldest start first."""
    root = Path(repo) / RUNS_DIR
    if not root.is_dir():
        return []
    found = []
    for directory in sorted(p for p in root.iterdir() if (p / "journal.jsonl").is_file()):
        info = read_run(Journal(directory))
        if info is not None:
            found.append(info)
    return sorted(found, key=lambda i: (i.started or 0.0, i.run))


def newest_run(repo: str | Path) -> RunInfo | None:
    """The RUN started last in ``repo`` (None if none was ever executed)."""
    runs = list_runs(repo)
    return max(runs, key=lambda i: i.last_started or 0.0) if runs else None
