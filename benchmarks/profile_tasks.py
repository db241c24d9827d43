"""Where the science time goes: run a sample of a graph's quanta in this process, per task.

    python benchmarks/profile_tasks.py --repo REPO --graph G.qgraph [--visits 1000,1002]
        [--patches 40] [--detectors 40,41] [--upstream] [--profile DIR]

Runs, in dependency order, the quanta of the chosen visits (isr, characterizeImage,
calibrate, and makeWarp onto the chosen patches) and of the chosen patches (coadd tasks,
which need every visit's warps: with ``--upstream`` every quantum they depend on runs
too, else quanta whose inputs are missing are reported as blocked),
writing outputs through the datastore into the graph's output RUN folder (nothing is
registered: use a throw-away copy of the repository or remove that folder afterwards). Prints
one JSON object: per task the quanta run, CPU and wall seconds of the whole quantum
(read, run, write) and of ``run`` alone, and with ``--profile DIR`` writes one cProfile
file per task, timed in CPU seconds of this process (the machine is shared), (``DIR/<task>.prof``; read with ``python -m pstats`` or snakeviz).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any


def _select(graph: Any, visits: set[int], patches: set[int], detectors: set[int]) -> list[Any]:
    chosen = []
    for q in graph.quanta:
        data_id = q.data_id.to_dict()
        if detectors and data_id.get("detector", min(detectors)) not in detectors:
            continue
        visit = data_id.get("visit", data_id.get("exposure"))
        patch = data_id.get("patch")
        if visit is not None and visit not in visits:
            continue
        if patch is not None and patch not in patches:
            continue
        chosen.append(q)
    return chosen


def _with_upstream(graph: Any, chosen: list[Any]) -> list[Any]:
    upstream = graph.upstream
    seen = {q.index for q in chosen}
    todo = list(seen)
    while todo:
        for parent in upstream[todo.pop()]:
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return [graph.quanta[i] for i in sorted(seen)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", required=True, type=Path)
    parser.add_argument("--graph", required=True, type=Path)
    parser.add_argument("--visits", default="", help="comma-separated visit ids")
    parser.add_argument("--patches", default="", help="comma-separated patch ids")
    parser.add_argument("--detectors", default="", help="comma-separated detector ids")
    parser.add_argument(
        "--upstream", action="store_true", help="add every quantum the chosen ones depend on"
    )
    parser.add_argument("--profile", type=Path, default=None, help="write DIR/<task>.prof")
    args = parser.parse_args(argv)

    from rc2_platform.butler import Butler
    from rc2_platform.execution.executor import PreparedTask, QuantumExecutor
    from rc2_platform.graph import load_graph

    graph = load_graph(args.graph)
    visits = {int(v) for v in args.visits.split(",") if v}
    patches = {int(p) for p in args.patches.split(",") if p}
    detectors = {int(d) for d in args.detectors.split(",") if d}
    chosen = _select(graph, visits, patches, detectors)
    if args.upstream:
        chosen = _with_upstream(graph, chosen)
    order = {i: k for k, i in enumerate(graph.topological_order([q.index for q in chosen]))}
    chosen.sort(key=lambda q: order[q.index])
    with Butler(args.repo) as butler:
        overall = {r.id: r for q in chosen for r in q.all_inputs() if r.id not in graph.producers}
        records = {r.dataset_id: r for r in butler.datastore_records(overall.values()).values()}
    executor = QuantumExecutor(Butler.open_datastore(args.repo), graph.output_run, records)
    tasks = {t.label: PreparedTask(t) for t in graph.tasks}
    stats: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    profiles: dict[str, cProfile.Profile] = {}
    for q in chosen:
        prof = (
            profiles.setdefault(q.task_label, cProfile.Profile(time.process_time))
            if args.profile
            else None
        )
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if prof is not None:
            prof.enable()
        outcome = executor.execute(q, tasks[q.task_label])
        if prof is not None:
            prof.disable()
        s = stats[q.task_label]
        s[outcome.status] += 1
        s["cpu_seconds"] += time.process_time() - cpu0
        s["wall_seconds"] += time.perf_counter() - wall0
        s["run_seconds"] += float(outcome.timing.get("run_seconds") or 0.0)
        if outcome.error and s.get("errors_shown", 0) < 3:
            s["errors_shown"] += 1
            print(f"{q.task_label} {q.data_id.to_dict()}: {outcome.error}", file=sys.stderr)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        for label, prof in profiles.items():
            prof.dump_stats(args.profile / f"{label}.prof")
    out = {
        "quanta": len(chosen),
        "load_average": os.getloadavg()[0],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tasks": {
            label: {
                **{k: round(v, 3) for k, v in s.items() if k != "errors_shown"},
                "cpu_ms_per_quantum": round(
                    1000
                    * s["cpu_seconds"]
                    / max(sum(s[k] for k in ("succeeded", "failed", "blocked")), 1),
                    1,
                ),
            }
            for label, s in stats.items()
        },
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
