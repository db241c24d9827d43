"""Execution benchmark: the real RC2 tract graph, every task a stand-in, on the local backend.

Usage::

    rc2 simulate rc2 /tmp/x/sim
    rc2 bootstrap /tmp/x/repo /tmp/x/sim/bootstrap.yaml
    rc2 qgraph build /tmp/x/repo --pipeline DRP-RC2 --input HSC/defaults --output u/bench/run \\
        --where "skymap = 'hsc_rings_v1' AND tract = 9615" --save /tmp/x/g.qgraph
    python benchmarks/execution.py --repo /tmp/x/repo --graph /tmp/x/g.qgraph \\
        --work /tmp/x/bench [--workers 1,2] [--launcher forkserver|subprocess]

Every task of the graph is replaced by :class:`~rc2_platform.execution.stand_in.StandInTask`
(reads every input through the datastore, writes one small object per output with the
output's real formatter: 4x4 FITS images, 3-row FITS tables, YAML). For each worker count
(cluster jobs at once, one process each) the bootstrapped repository is copied to
``WORK/w<N>/repo`` (its raws are ingested in place, so only the registry and small files
are copied) and the graph run with the packaged execution config. Prints JSON per worker
count: total time, time inside the tasks' ``run``, harness overhead per quantum, files and
registry rows written, cluster jobs, and the Dagster execution job's size for this graph
(one step per cluster plus fixed ops).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from rc2_platform.butler import Butler
from rc2_platform.execution.execution_config import load_execution_config
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.records import JobResult
from rc2_platform.execution.runner import RunOptions, run_graph
from rc2_platform.execution.stand_in import stand_in_graph
from rc2_platform.graph import save_graph
from rc2_platform.graph.clustering import plan_clusters
from rc2_platform.graph.io import load_graph

#: Ops of the Dagster execution job besides one step per cluster (read graph, prepare the
#: RUN, collect/materialize results), and Dagster's event-log rows per step (start,
#: success, output, handled output, logs ~= 13 measured for a trivial mapped step).
FIXED_OPS = 3
EVENTS_PER_STEP = 13


def dagster_estimate(graph_path: Path) -> dict[str, Any]:
    """Clusters per stage with the packaged clustering rules and the Dagster job size."""
    graph = load_graph(graph_path)
    plan = plan_clusters(graph, load_execution_config().clustering)
    per_stage = {s: len(plan.in_stage(s)) for s in plan.stages}
    steps = len(plan.clusters) + FIXED_OPS
    return {
        "quanta": len(graph),
        "clusters_per_stage": per_stage,
        "dagster_steps": steps,
        "dagster_event_rows_estimate": steps * EVENTS_PER_STEP,
        "quanta_per_cluster_mean": round(len(graph) / max(len(plan.clusters), 1), 1),
    }


def measure(repo: Path, graph: Path, workers: int, launcher: str) -> dict[str, Any]:
    """Run ``graph`` in ``repo`` with ``workers`` local jobs at once; return the figures."""
    config = load_execution_config()
    local = config.backends.local.model_copy(update={"launcher": launcher})
    config = config.model_copy(
        update={"backends": config.backends.model_copy(update={"local": local})}
    )
    with Butler(repo) as butler, butler.registry.engine.connect() as conn:
        rows0 = conn.execute(sa.text("select count(*) from dataset")).scalar_one()
    load0 = os.getloadavg()[0]
    start, cpu0 = time.perf_counter(), time.process_time()
    summary = run_graph(graph, repo, config=config, options=RunOptions(jobs=workers, processes=1))
    total = time.perf_counter() - start
    orchestrator_cpu = time.process_time() - cpu0
    run = summary.run
    journal = Journal.for_run(repo, run)
    inside = job_wall = job_cpu = 0.0
    jobs = n = 0
    for ev in journal.events("job_finished"):
        jobs += 1
        if ev.get("result"):
            result = JobResult.read(ev["result"])
            job_wall += result.end - result.start
            job_cpu += result.cpu_seconds or 0.0
            for o in result.outcomes:
                inside += o.timing.get("run_seconds", 0.0)
                n += 1
    aggregated = [e for e in journal.events("outputs_registered")]
    aggregate_seconds = sum(e.get("seconds", 0.0) for e in aggregated)
    files = sum(1 for p in (repo / run).rglob("*") if p.is_file())
    with Butler(repo) as butler, butler.registry.engine.connect() as conn:
        rows = conn.execute(sa.text("select count(*) from dataset")).scalar_one() - rows0
    return {
        "workers": workers,
        "launcher": launcher,
        "status": summary.status,
        "counts": summary.counts,
        "quanta": n,
        "cluster_jobs": jobs,
        "load_average_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "total_seconds": round(total, 2),
        "orchestrator_cpu_seconds": round(orchestrator_cpu, 2),
        "jobs_cpu_seconds": round(job_cpu, 2),
        "cpu_ms_per_quantum": round(1000 * (orchestrator_cpu + job_cpu) / max(n, 1), 2),
        "harness_cpu_ms_per_quantum": round(
            1000 * (orchestrator_cpu + job_cpu - inside) / max(n, 1), 2
        ),
        "aggregate_calls": len(aggregated),
        "aggregate_seconds": round(aggregate_seconds, 2),
        "job_wall_seconds": round(job_wall, 2),
        "task_run_seconds": round(inside, 2),
        "overhead_ms_per_quantum": round(1000 * (total * workers - inside) / max(n, 1), 2),
        "in_job_ms_per_quantum": round(1000 * (job_wall - inside) / max(n, 1), 2),
        "wall_ms_per_quantum": round(1000 * total / max(n, 1), 2),
        "files_written": files,
        "registry_dataset_rows_written": rows,
    }


def main() -> None:
    """Parse arguments, run each worker count in a fresh copy of the repository, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True, help="bootstrapped repository")
    parser.add_argument("--graph", type=Path, required=True, help="graph built in --repo")
    parser.add_argument("--work", type=Path, required=True, help="scratch directory")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--launcher", default="forkserver", choices=["forkserver", "subprocess"])
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stand_in = args.work / "stand_in.qgraph"
    save_graph(stand_in_graph(load_graph(args.graph)), stand_in)
    estimate = dagster_estimate(stand_in)
    estimate["stand_in_graph_seconds"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(estimate), flush=True)
    results = []
    for workers in (int(w) for w in args.workers.split(",")):
        target = args.work / f"w{workers}-{args.launcher}"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(args.repo, target / "repo", symlinks=True)
        entry = measure(target / "repo", stand_in, workers, args.launcher)
        results.append(entry)
        print(json.dumps(entry), flush=True)
    print(json.dumps({"benchmark": "execution", "graph": estimate, "results": results}, indent=2))


if __name__ == "__main__":
    main()
