"""The whole chain on tract 9615 with real pixels, or a slice of it: one command, JSON out.

Usage::

    python benchmarks/full_tract.py --work /tmp/ft            # the whole tract (hours on a
                                                              # busy 2-core machine)
    python benchmarks/full_tract.py --work /tmp/ft --visits 2 --patches 39,40,41,48,49,50
    python benchmarks/full_tract.py --work /tmp/ft --visits 1 --patches 40 --inject-faults
    python benchmarks/full_tract.py --work /tmp/ft --reuse --run u/me/b2 --patches 30,31

Runs, each as its own ``rc2`` process: ``simulate rc2-pixels`` (``--workers``),
``bootstrap``, ``qgraph build`` (DRP-RC2 over the tract, or ``patch IN (...)``), ``run``
(``--jobs``, default 2), ``validate`` (with ``--patch-png``) and ``report``. Registration
happens inside ``rc2 run`` (after each job and once at the end); its seconds come from the
RUN's journal (``outputs_registered`` events) and are reported as their own stage.

Per stage: wall seconds; CPU seconds of the stage's processes, reaped (``os.wait4``: the
process and every descendant it waited for; misses the fork server's jobs, which it does
not reap) and sampled (psutil: each process's last-seen CPU time, summed; misses a
process's last ``--sample`` seconds); the peak RSS of the largest process (``ru_maxrss``)
and of every process seen (psutil, sampled every ``--sample`` seconds: the orchestrator,
the fork server, the cluster jobs); the load average before and after.
From the run's provenance (``rc2 report --json``): per task quanta, CPU and wall seconds,
peak memory; and the extrapolation to the whole tract's 20,727 quanta, per task, of CPU
seconds (the floor: the tasks' own CPU over 2 cores) and of the measured wall time per
quantum.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

RUN = "u/bench/full_tract"
SKYMAP = "hsc_rings_v1_bin16"
TRACT = 9615

#: Quanta per task of tract 9615's whole graph (the rc2 preset's = rc2-pixels', task for
#: task; `rc2 qgraph build` over the tract, see docs/benchmarks.md).
TRACT_9615_QUANTA = {
    "isr": 5068,
    "characterizeImage": 5068,
    "calibrate": 5068,
    "makeWarp": 3336,
    "assembleCoadd": 405,
    "detection": 405,
    "mergeDetections": 81,
    "deblend": 405,
    "measure": 405,
    "mergeMeasurements": 81,
    "forcedPhotCoadd": 405,
}


class _Sampler(threading.Thread):
    """Peak RSS of every process of a tree, sampled with psutil (if installed)."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peaks: dict[int, tuple[str, int]] = {}
        self.cpu: dict[int, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        while not self.done.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    times = p.cpu_times()
                    name = " ".join(p.cmdline()[1:4])[:80] or p.name()
                except psutil.Error:
                    continue
                self.cpu[p.pid] = times.user + times.system
                if rss > self.peaks.get(p.pid, ("", 0))[1]:
                    self.peaks[p.pid] = (name, rss)
            self.done.wait(self.interval)

    def summary(self) -> dict[str, Any]:
        top = sorted(self.peaks.values(), key=lambda v: -v[1])
        return {
            "cpu_seconds_sampled": round(sum(self.cpu.values()), 2),
            "processes_seen": len(top),
            "peak_rss_mib_by_process": [
                {"process": name, "peak_rss_mib": round(rss / 2**20, 1)} for name, rss in top[:8]
            ],
        }


def _stage(name: str, argv: list[str], log_dir: Path, sample: float) -> dict[str, Any]:
    """Run one stage as a child process; its wall, CPU, peak RSS and load around it."""
    load0 = os.getloadavg()
    out, err = (log_dir / f"{name}.out").open("wb"), (log_dir / f"{name}.err").open("wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=out, stderr=err)
    sampler = _Sampler(proc.pid, sample)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    sampler.done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.close()
    err.close()
    result = {
        "command": " ".join(argv[1:4]) + " …",
        "exit_code": proc.returncode,
        "wall_seconds": round(wall, 2),
        "cpu_seconds_reaped": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mib_largest_process": round(usage.ru_maxrss / 1024, 1),
        **sampler.summary(),
        "load_before": [round(x, 2) for x in load0],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(f"{name}: {result['wall_seconds']} s wall, {result['cpu_seconds_reaped']} s CPU "
          f"reaped ({result['cpu_seconds_sampled']} sampled), exit {proc.returncode}",
          file=sys.stderr)  # fmt: skip
    return result


def _registration(repo: Path, run: str) -> dict[str, Any]:
    """Seconds of the registrations `rc2 run` journaled (inside its wall time)."""
    journals = list((repo / "_runs").glob(f"{run.replace('/', '_')}-*/journal.jsonl"))
    events = [
        json.loads(line)
        for path in journals
        for line in path.read_text().splitlines()
        if '"outputs_registered"' in line
    ]
    return {
        "inside": "rc2 run",
        "calls": len(events),
        "datasets": sum(e.get("registered") or 0 for e in events),
        "wall_seconds": round(sum(e.get("seconds") or 0.0 for e in events), 2),
        "cpu_seconds": round(sum(e.get("cpu_seconds") or 0.0 for e in events), 2),
    }


def _extrapolate(timing: dict[str, dict[str, float]], run_wall: float, jobs: int) -> dict:
    """Per task CPU per quantum, scaled to the whole tract's quanta."""
    per_task: dict[str, Any] = {}
    cpu_total = 0.0
    for task, n_full in TRACT_9615_QUANTA.items():
        t = timing.get(task)
        if not t or not t.get("count"):
            per_task[task] = {"quanta_full_tract": n_full, "measured": 0}
            continue
        cpu_q = t["cpu_seconds"] / t["count"]
        wall_q = t["total_seconds"] / t["count"]
        cpu_total += cpu_q * n_full
        per_task[task] = {
            "measured": int(t["count"]),
            "cpu_seconds_per_quantum": round(cpu_q, 4),
            "wall_seconds_per_quantum": round(wall_q, 4),
            "quanta_full_tract": n_full,
            "cpu_seconds_full_tract": round(cpu_q * n_full, 1),
        }
    measured = sum(int(t.get("count", 0)) for t in timing.values())
    full = sum(TRACT_9615_QUANTA.values())
    return {
        "per_task": per_task,
        "task_cpu_seconds_full_tract": round(cpu_total, 1),
        "floor_wall_seconds_on_2_free_cores": round(cpu_total / 2, 1),
        "run_wall_seconds_per_quantum_measured": round(run_wall / max(measured, 1), 4),
        "run_wall_seconds_full_tract_at_measured_rate": round(
            run_wall / max(measured, 1) * full, 1
        ),
        "jobs": jobs,
    }


def _rc2() -> str:
    found = shutil.which("rc2", path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit("the rc2 command is not installed next to this Python")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for sim/, repo/")
    parser.add_argument("--visits", type=int, default=None, help="visits per band (max 10)")
    parser.add_argument("--patches", default="", help="comma-separated patch ids (default all)")
    parser.add_argument("--max-detectors", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=2, help="rc2 run --jobs")
    parser.add_argument("--sim-workers", type=int, default=2, help="rc2 simulate --workers")
    parser.add_argument("--inject-faults", action="store_true")
    parser.add_argument("--sample", type=float, default=0.5, help="psutil sampling seconds")
    parser.add_argument("--overwrite", action="store_true", help="empty --work first")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep WORK/sim and WORK/repo of an earlier invocation: graph, run, validate only",
    )
    parser.add_argument("--run", default=RUN, help=f"output RUN (default {RUN})")
    args = parser.parse_args(argv)

    work: Path = args.work
    run = args.run
    if args.overwrite and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    rc2 = _rc2()
    sim, repo = work / "sim", work / "repo"
    graph = work / f"{run.replace('/', '_')}.qgraph"

    simulate = [rc2, "simulate", "rc2-pixels", str(sim), "--workers", str(args.sim_workers),
                "--json"]  # fmt: skip
    if args.visits is not None:
        simulate += ["--scale", str(min(args.visits, 10) / 10)]
    if args.max_detectors is not None:
        simulate += ["--max-detectors", str(args.max_detectors)]
    if args.inject_faults:
        simulate.append("--inject-faults")
    where = f"skymap = '{SKYMAP}' AND tract = {TRACT}"
    if args.patches:
        where += f" AND patch IN ({args.patches})"
    stages: dict[str, Any] = {}
    if not args.reuse:
        stages["simulate"] = _stage("simulate", simulate, logs, args.sample)
        stages["bootstrap"] = _stage(
            "bootstrap", [rc2, "bootstrap", str(repo), str(sim / "bootstrap.yaml"), "--json"],
            logs, args.sample,
        )  # fmt: skip
    stages["graph"] = _stage(
        "graph",
        [rc2, "qgraph", "build", str(repo), "--pipeline", "DRP-RC2", "--input", "HSC/defaults",
         "--output", run, "--where", where, "--save", str(graph), "--json"],
        logs, args.sample,
    )  # fmt: skip
    stages["run"] = _stage(
        "run", [rc2, "run", str(repo), str(graph), "--jobs", str(args.jobs), "--json"],
        logs, args.sample,
    )  # fmt: skip
    stages["register"] = _registration(repo, run)
    stages["validate"] = _stage(
        "validate",
        [rc2, "validate", str(repo), run, "--json", "--truth", str(sim / "truth.fits"),
         "--png", str(work / "validation.png"), "--patch-png", str(work / "patch_maps.png")],
        logs, args.sample,
    )  # fmt: skip
    subprocess.run([rc2, "report", str(repo), run, "--json"], check=False,
                   stdout=(logs / "report.json").open("wb"))  # fmt: skip
    report = json.loads((logs / "report.json").read_text() or "{}")
    quanta = sum(sum(v for k, v in row.items() if k != "retried")
                 for row in report.get("tasks", {}).values())  # fmt: skip
    result = {
        "slice": {
            "visits_per_band": args.visits or 10,
            "patches": args.patches or "all 81",
            "max_detectors": args.max_detectors,
            "inject_faults": args.inject_faults,
            "reused_repository": args.reuse,
            "run": run,
            "quanta": quanta,
            "jobs": args.jobs,
        },
        "stages": stages,
        "chain_wall_seconds": round(
            sum(s["wall_seconds"] for k, s in stages.items() if k != "register"), 1
        ),
        "run": {
            "status": report.get("status"),
            "totals": report.get("totals"),
            "workflow_wall_seconds": report.get("workflow_wall_seconds"),
            "per_task": report.get("timing"),
        },
        "extrapolation": _extrapolate(
            report.get("timing", {}), stages["run"]["wall_seconds"], args.jobs
        ),
        "validation": json.loads((logs / "validate.out").read_text() or "null"),
        "cpu_count": os.cpu_count(),
    }
    json.dump(result, sys.stdout, indent=2, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
