"""Run reports from a RUN's provenance: states per task, errors, statistics, timeline.

Like the seed's BPS summary: per task, quanta succeeded / failed / blocked / pending /
running and how many were retried; the failures grouped by error (exception type and
message), each naming tasks and data IDs; the workflow statistics (workflow wall time
from the first start to the last end, cumulative job wall time, badput); and the seed's
per-task table of attempts (count, succeeded, failed, blocked, min / max / mean / total
seconds, CPU seconds, peak memory). Everything comes from the RUN's provenance
(:func:`~.provenance_table.load_provenance`: the job records on disk, or the
``run_provenance`` dataset once the job folders are gone) and its journal, so a report
works while jobs run, after the orchestrator exited, and after it died — and says which.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rc2_platform.execution.attempts import RunStatus, job_output_files
from rc2_platform.execution.journal import Journal, run_directory
from rc2_platform.execution.provenance_table import load_provenance
from rc2_platform.execution.quantum_state import QuantumState
from rc2_platform.execution.run_lock import Liveness, holder_liveness, read_holder

__all__ = ["JobSpan", "RunReport", "build_report", "quantum_states", "write_timeline_png"]

#: Per-task state columns, in report order.
STATES = tuple(
    s.value
    for s in (
        QuantumState.SUCCEEDED,
        QuantumState.FAILED,
        QuantumState.BLOCKED,
        QuantumState.RUNNING,
        QuantumState.PENDING,
    )
)
_RAN = (QuantumState.SUCCEEDED.value, QuantumState.FAILED.value)


@dataclass
class JobSpan:
    """One job attempt on the timeline (seconds since the first run start)."""

    cluster: str
    attempt: int
    start: float
    end: float
    outcome: str  # succeeded | partial | died | cancelled | running


@dataclass
class RunReport:
    """Everything ``rc2 report`` prints.

    Attributes
    ----------
    run, status : str
        The RUN and its status (a :class:`RunStatus` value).
    orchestrator : str
        Who drives it and whether it is alive (``"pid 123 on host h (alive)"``).
    tasks : dict
        Per task: quanta per state, and ``retried`` (quanta that ran more than once).
    errors : list of dict
        Failures grouped by exception type and message pattern (the first line with
        its numbers left out, :func:`error_pattern`): count, tasks, the first message,
        example quanta.
    timing : dict
        Per task, the attempts: count, succeeded, failed, blocked, min / max / mean /
        total seconds, CPU seconds, peak memory.
    memory_retries : list of dict
        Each job attempt killed for memory: cluster, attempt, memory_mb, reason, and the
        retry with more memory (retry_attempt, retry_memory_mb), both None when it ran at
        ``retry.max_memory_mb`` and was not retried.
    """

    run: str
    status: str
    orchestrator: str
    tasks: dict[str, dict[str, int]]
    errors: list[dict[str, Any]]
    workflow_wall_seconds: float
    job_wall_seconds: float
    badput_seconds: float
    timing: dict[str, dict[str, float]]
    jobs: list[JobSpan] = field(default_factory=list)
    memory_retries: list[dict[str, Any]] = field(default_factory=list)

    def memory_lines(self) -> list[str]:
        """One line per attempt killed for memory and the memory its retry requests."""
        return [
            f"{r['cluster']} attempt {r['attempt']} ({r['memory_mb']} MiB) killed for memory: "
            f"{r['reason']} -> "
            + (
                f"attempt {r['retry_attempt']} requests {r['retry_memory_mb']} MiB"
                if r["retry_attempt"] is not None
                else "not retried: it ran at retry.max_memory_mb of the execution config"
            )
            for r in self.memory_retries
        ]

    def to_json(self) -> dict[str, Any]:
        """Plain data (``rc2 report --json``)."""
        return {
            "run": self.run,
            "status": self.status,
            "orchestrator": self.orchestrator,
            "tasks": self.tasks,
            "totals": {s: sum(t[s] for t in self.tasks.values()) for s in (*STATES, "retried")},
            "errors": self.errors,
            "workflow_wall_seconds": self.workflow_wall_seconds,
            "cumulative_job_wall_seconds": self.job_wall_seconds,
            "badput_seconds": self.badput_seconds,
            "timing": self.timing,
            "jobs": [vars(j) for j in self.jobs],
            "memory_retries": self.memory_retries,
        }


def _ts(value: Any) -> float | None:
    return None if value is None else float(value.timestamp())


def _latest(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The latest row of each quantum (by attempt, try, end time)."""
    latest: dict[int, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r["attempt"], r["try"] or 0, _ts(r["end"]) or 0.0)):
        latest[row["quantum"]] = row
    return latest


def _journal_view(journal: Journal) -> dict[str, Any]:
    """What only the journal says: skipped quanta, running attempts, cancelled jobs."""
    view: dict[str, Any] = {
        "skipped": {}, "open": {}, "cancelled": set(), "sessions": [], "folders": {},
        "memory": {}, "finished": {}, "memory_retries": [],
    }  # fmt: skip
    for ev in journal.events():
        _note_memory(view, ev)
        kind = ev["event"]
        key = (ev.get("cluster"), ev.get("attempt"))
        if kind == "run_started":
            view["sessions"].append(ev)
        elif kind == "quanta_skipped":
            view["skipped"].update({int(i): task for i, task in ev["quanta"]})
        elif kind == "job_submitted":
            view["open"][key] = ev
            view["folders"][key] = Path(ev["directory"])
        elif kind == "job_finished":
            view["open"].pop(key, None)
            if ev.get("cancelled"):
                view["cancelled"].add(key)
    return view


def _note_memory(view: dict[str, Any], ev: dict[str, Any]) -> None:
    """Follow the attempts' memory; note a memory kill: its escalated retry, or the cap."""
    kind, cluster = ev["event"], ev.get("cluster")
    if kind == "job_submitted":
        view["memory"][(cluster, ev.get("attempt"))] = ev.get("memory_mb")
    elif kind == "job_finished":
        view["finished"][cluster] = ev
    elif (kind == "retry_scheduled" and ev.get("memory_escalated")) or (
        kind == "memory_cap_reached"
    ):
        killed = view["finished"].get(cluster) or {}
        status = killed.get("status") or {}
        code = status.get("exit_code")
        reason = status.get("reason") or (
            f"exit code {code}" if code else "a quantum raised MemoryError"
        )
        view["memory_retries"].append(
            {
                "cluster": cluster,
                "attempt": killed.get("attempt"),
                "memory_mb": ev["memory_mb"]
                if kind == "memory_cap_reached"
                else view["memory"].get((cluster, killed.get("attempt"))),
                "reason": reason,
                "retry_attempt": None if kind == "memory_cap_reached" else ev.get("attempt"),
                "retry_memory_mb": None if kind == "memory_cap_reached" else ev.get("memory_mb"),
            }
        )


def _states(
    meta: dict[str, Any], rows: list[dict[str, Any]], view: dict[str, Any], alive: bool
) -> dict[int, tuple[str, str, Any]]:
    """Quantum index -> (task, state, data ID JSON) of every quantum known."""
    out: dict[int, tuple[str, str, Any]] = {
        i: (task, QuantumState.SUCCEEDED.value, None) for i, task in view["skipped"].items()
    }
    for i, row in _latest(rows).items():
        out[i] = (row["task"], row["state"], row["data_id"])
    for (cluster, attempt), ev in view["open"].items():
        recorded = {
            r["quantum"] for r in rows if (r["cluster"], r["attempt"]) == (cluster, attempt)
        }
        state = QuantumState.RUNNING if alive else QuantumState.PENDING
        for i, task, data_id in ev["quanta"]:
            if (
                int(i) not in recorded
                and not QuantumState(out.get(int(i), ("", "pending", 0))[1]).is_final
            ):
                out[int(i)] = (task, state.value, json.dumps(data_id, sort_keys=True))
    return out


def _task_table(
    meta: dict[str, Any], states: dict[int, tuple[str, str, Any]], rows: list[dict[str, Any]]
) -> dict[str, dict[str, int]]:
    tasks: dict[str, int] = dict(meta.get("tasks") or {})
    table = {t: dict.fromkeys((*STATES, "retried"), 0) for t in tasks}
    for task, state, _data_id in states.values():
        table.setdefault(task, dict.fromkeys((*STATES, "retried"), 0))[state] += 1
    runs: dict[int, int] = defaultdict(int)
    for row in rows:
        if row["state"] in _RAN and (row["try"] or 0) >= 1:
            runs[row["quantum"]] += 1
    for i, n in runs.items():
        if n > 1 and i in states:
            table[states[i][0]]["retried"] += 1
    for task, n in tasks.items():
        row = table[task]
        row[QuantumState.PENDING.value] += max(0, n - sum(row[s] for s in STATES))
    return table


#: Numbers (and the quoted values and lists next to them) that differ between failures of
#: one kind: "Unable to match sources: 3 matches, need at least 5" and "…: 0 matches…"
#: are one error.
_VARYING = re.compile(r"\[[^\]]*\]|\([^)]*\d[^)]*\)|'[^']*'|-?\d+(?:\.\d+)?(?:e-?\d+)?%?")


def error_pattern(message: str) -> str:
    """The first line of ``message`` with numbers, quoted values and lists as ``…``."""
    return _VARYING.sub("…", message.splitlines()[0] if message else "")


def _errors(
    rows: list[dict[str, Any]],
    states: dict[int, tuple[str, str, Any]],
    folders: dict[tuple[Any, Any], Path],
) -> list[dict[str, Any]]:
    def logs(row: dict[str, Any]) -> dict[str, str]:
        folder = folders.get((row["cluster"], row["attempt"]))
        return job_output_files(row["cluster"], folder) if row["cluster"] else {}

    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for i, row in _latest(rows).items():
        if states.get(i, ("", "", None))[1] == QuantumState.FAILED.value:
            message = (row["message"] or "unknown error").splitlines()[0]
            groups[(row["exception_type"] or "Error", error_pattern(message))].append(row)
    return [
        {
            "exception_type": etype,
            "message": (items[0]["message"] or "unknown error").splitlines()[0],
            "pattern": pattern,
            "count": len(items),
            "tasks": sorted({r["task"] for r in items}),
            "data_ids": [json.loads(r["data_id"]) for r in items[:10]],
            "quanta": [
                {
                    "task": r["task"],
                    "data_id": json.loads(r["data_id"]),
                    "quantum": r["quantum"],
                    "cluster": r["cluster"],
                    "attempt": r["attempt"],
                    **logs(r),
                }
                for r in items[:10]
            ],
        }  # fmt: skip
        for (etype, pattern), items in sorted(groups.items(), key=lambda kv: -len(kv[1]))
    ]


def _timing(
    rows: list[dict[str, Any]], table: dict[str, dict[str, int]]
) -> dict[str, dict[str, float]]:
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["state"] in _RAN:
            per[row["task"]].append(row)
    out: dict[str, dict[str, float]] = {}
    for task in table:
        attempts = per.get(task, [])
        secs = [r["wall_seconds"] for r in attempts if r["wall_seconds"] is not None]
        entry: dict[str, float] = {
            "count": len(attempts),
            "succeeded": sum(1 for r in attempts if r["state"] == QuantumState.SUCCEEDED.value),
            "failed": sum(1 for r in attempts if r["state"] == QuantumState.FAILED.value),
            "blocked": table[task][QuantumState.BLOCKED.value],
        }
        if secs:
            entry.update(
                min_seconds=min(secs),
                max_seconds=max(secs),
                mean_seconds=sum(secs) / len(secs),
                total_seconds=sum(secs),
                cpu_seconds=sum(r["cpu_seconds"] or 0.0 for r in attempts),
                peak_memory_mb=max(r["peak_memory_mb"] or 0.0 for r in attempts),
            )
        if attempts or entry["blocked"]:
            out[task] = entry
    return out


def _spans(rows: list[dict[str, Any]], view: dict[str, Any], origin: float) -> list[JobSpan]:
    jobs: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["attempt"] and row["start"] is not None:
            jobs[(row["cluster"], row["attempt"])].append(row)
    spans = []
    for (cluster, attempt), items in sorted(
        jobs.items(), key=lambda kv: min(_ts(r["start"]) or 0 for r in kv[1])
    ):
        start = min(_ts(r["start"]) or 0.0 for r in items)
        end = max(_ts(r["end"]) or start for r in items)
        if (cluster, attempt) in view["cancelled"]:
            outcome = "cancelled"
        elif any(r["exception_type"] == "JobDied" for r in items):
            outcome = "died"
        elif (cluster, attempt) in view["open"]:
            outcome = "running"
        else:
            ok = all(r["state"] == QuantumState.SUCCEEDED.value for r in items)
            outcome = "succeeded" if ok else "partial"
        spans.append(JobSpan(cluster, attempt, start - origin, end - origin, outcome))
    return spans


def _status(journal: Journal, directory: Path, meta: dict[str, Any]) -> tuple[str, str, bool]:
    """(status, orchestrator description, alive) of a RUN."""
    started = journal.last("run_started")
    finished = journal.last("run_finished")
    if started is None:
        return str(meta.get("status") or "unknown"), "unknown (no journal)", False
    if finished is not None and finished["time"] >= started["time"]:
        return str(finished["status"]), "ended", False
    holder = read_holder(directory)
    if holder is not None:
        liveness = holder_liveness(holder)
        if liveness is Liveness.UNKNOWN:
            dag = journal.last("dag_submitted") is not None
            status = RunStatus.SUBMITTED if dag else RunStatus.RUNNING
            return status.value, f"{holder.describe()}: {liveness.value}", True
        alive = liveness is Liveness.ALIVE
        status = RunStatus.RUNNING if alive else RunStatus.INTERRUPTED
        return status.value, f"{holder.describe()}: {liveness.value}", alive
    host, pid = started.get("host"), started.get("pid")
    alive = host == socket.gethostname() and pid is not None and _pid_alive(int(pid))
    status = RunStatus.RUNNING if alive else RunStatus.INTERRUPTED
    return status.value, f"pid {pid} on host {host}: {'alive' if alive else 'dead'}", alive


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def quantum_states(repo: str | Path, run: str) -> dict[int, QuantumState]:
    """The latest state of every quantum the RUN's provenance and journal name."""
    table = load_provenance(repo, run)
    journal = Journal(run_directory(repo, run))
    _status_, _who, alive = _status(journal, journal.directory, {})
    states = _states({}, table.to_pylist(), _journal_view(journal), alive)
    return {i: QuantumState(state) for i, (_task, state, _d) in states.items()}


def build_report(repo: str | Path, run: str) -> RunReport:
    """Build the report of ``run`` in ``repo`` from its provenance and journal.

    Raises
    ------
    RunNotFoundError
        If the run was never executed from this repository (no journal, no provenance).
    """
    table = load_provenance(repo, run)
    raw = (table.schema.metadata or {}).get(b"rc2_provenance")
    meta: dict[str, Any] = json.loads(raw) if raw else {}
    rows = table.to_pylist()
    directory = run_directory(repo, run)
    journal = Journal(directory)
    status, orchestrator, alive = _status(journal, directory, meta)
    view = _journal_view(journal)
    states = _states(meta, rows, view, alive)
    tasks = _task_table(meta, states, rows)
    starts = [s["time"] for s in view["sessions"]] or [meta.get("first_start") or 0.0]
    origin = min([*starts, *(_ts(r["start"]) for r in rows if r["start"] is not None)])
    ends = [_ts(r["end"]) or 0.0 for r in rows] + [meta.get("last_event") or 0.0]
    finished = journal.last("run_finished")
    if finished is not None:
        ends.append(finished["time"])
    last = time.time() if status in (RunStatus.RUNNING, RunStatus.SUBMITTED) else max(ends)
    spans = _spans(rows, view, origin)
    badput = sum(r["wall_seconds"] or 0.0 for r in rows if r["state"] == QuantumState.FAILED.value
                 and r["exception_type"] != "JobDied")  # fmt: skip
    badput += sum(s.end - s.start for s in spans if s.outcome == "died")
    return RunReport(
        run=run,
        status=status,
        orchestrator=orchestrator,
        tasks=tasks,
        errors=_errors(rows, states, view["folders"]),
        workflow_wall_seconds=max(0.0, last - origin),
        job_wall_seconds=sum(s.end - s.start for s in spans),
        badput_seconds=badput,
        timing=_timing(rows, tasks),
        jobs=spans,
        memory_retries=view["memory_retries"],
    )


_COLORS = {
    "running": "tab:blue",
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
