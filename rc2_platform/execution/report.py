"""Run reports from the journal: per-task states, errors, workflow statistics, timeline.

Like the seed's BPS summary: per task, quanta succeeded / failed / blocked / pending /
retried, the failing quanta's errors grouped by message; and like its workflow
statistics: workflow wall time, cumulative job wall time, badput (wall time of failed
attempts), per task count / min / max / mean / total seconds and peak memory. Everything
comes from the run's journal and the job result files it names, so a report works after
the orchestrator exited (or died).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rc2_platform.errors import ClusterJobError
from rc2_platform.execution.job import JobResult
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.quantum_state import QuantumState

__all__ = ["JobSpan", "RunReport", "build_report", "quantum_states", "write_timeline_png"]

STATES = tuple(
    s.value
    for s in (
        QuantumState.SUCCEEDED,
        QuantumState.FAILED,
        QuantumState.BLOCKED,
        QuantumState.PENDING,
    )
)


@dataclass
class JobSpan:
    """One job attempt on the timeline (seconds since the first run start)."""

    cluster: str
    attempt: int
    start: float
    end: float
    outcome: str  # succeeded | partial | died | cancelled


@dataclass
class RunReport:
    """Everything ``rc2 report`` prints."""

    run: str
    status: str
    tasks: dict[str, dict[str, int]]
    errors: list[dict[str, Any]]
    workflow_wall_seconds: float
    job_wall_seconds: float
    badput_seconds: float
    timing: dict[str, dict[str, float]]
    jobs: list[JobSpan] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain data (``rc2 report --json``)."""
        return {
            "run": self.run,
            "status": self.status,
            "tasks": self.tasks,
            "totals": {s: sum(t[s] for t in self.tasks.values()) for s in (*STATES, "retried")},
            "errors": self.errors,
            "workflow_wall_seconds": self.workflow_wall_seconds,
            "cumulative_job_wall_seconds": self.job_wall_seconds,
            "badput_seconds": self.badput_seconds,
            "timing": self.timing,
            "jobs": [vars(j) for j in self.jobs],
        }


@dataclass
class _Quantum:
    task: str
    data_id: dict[str, Any]
    state: QuantumState = QuantumState.PENDING
    error: str | None = None
    starts: int = 0


def _replay(journal: Journal) -> tuple[dict[int, _Quantum], list[dict[str, Any]], dict[str, Any]]:
    quanta: dict[int, _Quantum] = {}
    submitted: dict[tuple[str, int], dict[str, Any]] = {}
    jobs: list[dict[str, Any]] = []
    meta: dict[str, Any] = {"tasks": {}, "segments": [], "status": "unknown", "run": ""}
    for ev in journal.events():
        kind = ev["event"]
        if kind == "run_started":
            meta["tasks"], meta["run"] = ev["tasks"], ev["run"]
            meta["segments"].append([ev["time"], None])
            meta["status"] = "running"
        elif kind == "run_finished":
            if meta["segments"]:
                meta["segments"][-1][1] = ev["time"]
            meta["status"] = ev["status"]
        elif kind == "quanta_skipped":
            for i, task in ev["quanta"]:
                quanta[i] = _Quantum(task, {}, QuantumState.SUCCEEDED)
        elif kind == "quanta_blocked":
            for i, task, data_id, _by in ev["quanta"]:
                quanta[i] = _Quantum(task, data_id, QuantumState.BLOCKED, "upstream quantum failed")
        elif kind == "job_submitted":
            submitted[(ev["cluster"], ev["attempt"])] = ev
            for i, task, data_id in ev["quanta"]:
                q = quanta.setdefault(i, _Quantum(task, data_id))
                q.task, q.data_id, q.state = task, data_id, QuantumState.PENDING
                q.starts += 1
        elif kind == "job_finished":
            sub = submitted.get((ev["cluster"], ev["attempt"]))
            if sub is not None:
                jobs.append(_apply_finished(ev, sub, quanta))
    return quanta, jobs, meta


def _apply_finished(
    ev: dict[str, Any], sub: dict[str, Any], quanta: dict[int, _Quantum]
) -> dict[str, Any]:
    job: dict[str, Any] = {
        "cluster": ev["cluster"],
        "attempt": ev["attempt"],
        "start": sub["time"],
        "end": ev["time"],
        "outcomes": [],
        "died": True,
        "cancelled": bool(ev.get("cancelled")),
    }
    result = None
    if ev.get("result"):
        try:
            result = JobResult.read(ev["result"])
        except ClusterJobError:
            result = None
    if result is not None:
        job.update(start=result.start, end=result.end, died=False, outcomes=result.outcomes)
        for o in result.outcomes:
            q = quanta.setdefault(o.index, _Quantum(o.task_label, o.data_id))
            q.state, q.error = o.status, o.error
    else:
        reason = (ev.get("status") or {}).get("reason") or "no result file"
        for i, _task, _data_id in sub["quanta"]:
            quanta[i].state = QuantumState.FAILED
            quanta[i].error = f"job died before writing its result ({reason})"
    return job


def _task_table(quanta: dict[int, _Quantum], totals: dict[str, int]) -> dict[str, dict[str, int]]:
    table = {t: {s: 0 for s in (*STATES, "retried")} for t in totals}
    for q in quanta.values():
        row = table.setdefault(q.task, {s: 0 for s in (*STATES, "retried")})
        row[q.state] += 1
        row["retried"] += max(0, q.starts - 1)
    for task, n in totals.items():
        row = table[task]
        row["pending"] += max(0, n - sum(row[s] for s in STATES))
    return table


def _errors(quanta: dict[int, _Quantum]) -> list[dict[str, Any]]:
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for q in quanta.values():
        if q.state is QuantumState.FAILED:
            groups[q.error or "unknown error"].append((q.task, q.data_id))
    return [
        {
            "message": msg,
            "count": len(items),
            "tasks": sorted({t for t, _ in items}),
            "data_ids": [d for _, d in items[:10]],
        }
        for msg, items in sorted(groups.items(), key=lambda kv: -len(kv[1]))
    ]


def _timing(jobs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    per: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for job in jobs:
        for o in job["outcomes"]:
            if o.timing:
                per[o.task_label].append((o.timing.get("wall_seconds", 0.0), o.peak_rss_mb))
    out = {}
    for task, values in per.items():
        secs = [v for v, _ in values]
        out[task] = {
            "count": len(secs),
            "min_seconds": min(secs),
            "max_seconds": max(secs),
            "mean_seconds": sum(secs) / len(secs),
            "total_seconds": sum(secs),
            "peak_memory_mb": max(m for _, m in values),
        }
    return out


def quantum_states(repo: str | Path, run: str) -> dict[int, QuantumState]:
    """The latest state of every quantum the journal of ``run`` names, by quantum index."""
    quanta, _jobs, _meta = _replay(Journal.for_run(repo, run, must_exist=True))
    return {i: q.state for i, q in quanta.items()}


def build_report(repo: str | Path, run: str) -> RunReport:
    """Build the report of ``run`` from its journal in ``repo``.

    Raises
    ------
    RunNotFoundError
        If the run was never executed from this repository.
    """
    journal = Journal.for_run(repo, run, must_exist=True)
    quanta, jobs, meta = _replay(journal)
    origin = meta["segments"][0][0] if meta["segments"] else 0.0
    last = max([j["end"] for j in jobs] + [origin])
    wall = sum((end if end is not None else last) - start for start, end in meta["segments"])
    job_wall = sum(j["end"] - j["start"] for j in jobs)
    badput = 0.0
    spans = []
    for j in jobs:
        if j["died"]:
            badput += j["end"] - j["start"]
            outcome = "cancelled" if j["cancelled"] else "died"
        else:
            badput += sum(
                o.timing.get("wall_seconds", 0.0)
                for o in j["outcomes"]
                if o.status is QuantumState.FAILED
            )
            ok = all(o.status is QuantumState.SUCCEEDED for o in j["outcomes"])
            outcome = "succeeded" if ok else "partial"
        spans.append(
            JobSpan(j["cluster"], j["attempt"], j["start"] - origin, j["end"] - origin, outcome)
        )
    return RunReport(
        run=meta["run"] or run,
        status=meta["status"],
        tasks=_task_table(quanta, meta["tasks"]),
        errors=_errors(quanta),
        workflow_wall_seconds=wall,
        job_wall_seconds=job_wall,
        badput_seconds=badput,
        timing=_timing(jobs),
        jobs=spans,
    )


_COLORS = {
    "succeeded": "tab:green",
    "partial": "tab:orange",
    "died": "tab:red",
    "cancelled": "tab:gray",
}


def write_timeline_png(report: RunReport, path: str | Path) -> Path:
    """Draw one horizontal bar per job attempt (time since the run started) into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    path = Path(path)
    height = max(2.0, min(0.25 * len(report.jobs) + 1.5, 40.0))
    fig, ax = plt.subplots(figsize=(10, height))
    for row, span in enumerate(report.jobs):
        ax.barh(row, max(span.end - span.start, 1e-3), left=span.start, color=_COLORS[span.outcome])
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel("job attempt")
    ax.set_title(f"RUN {report.run}: {len(report.jobs)} job attempts ({report.status})")
    if len(report.jobs) <= 40:
        ax.set_yticks(range(len(report.jobs)))
        ax.set_yticklabels([f"{s.cluster}#{s.attempt}" for s in report.jobs], fontsize=7)
    ax.legend(handles=[Patch(color=c, label=k) for k, c in _COLORS.items()], loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
