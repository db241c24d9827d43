"""Dagster overhead: one tract's graph run by ``rc2 run`` and by the Dagster execution job.

Usage (one command; prints JSON, the last object is the summary)::

    python benchmarks/dagster_overhead.py [--work DIR] [--jobs 2] [--processes 1]
        [--preset tiny | --preset rc2 --max-detectors 8 --patches 4 --stand-in]

What it does:

1. ``rc2 simulate PRESET`` (seed 1), bootstrap a base repository (SQLite, local
   datastore) and build the demo graph of the first tract (``demo_where``: the simulated
   patches; ``--patches N`` keeps the first N of them) with the ``DRP-RC2`` pipeline —
   for ``tiny``, 438 quanta of the real science tasks. ``--stand-in`` replaces every task
   by :class:`~rc2_platform.execution.stand_in.StandInTask` (the quanta stay).
2. For each contender, a fresh copy of the base repository (``WORK/<contender>/repo``):

   - ``rc2``: ``rc2 run REPO GRAPH --jobs J --processes P`` as a subprocess;
   - ``dagster``: a subprocess that opens a real ``DagsterInstance`` in a fresh
     ``DAGSTER_HOME`` holding the shipped top-level ``dagster.yaml`` (SQLite storage,
     pools), records the graph as the tract's ``quantum_graph`` materialization and runs
     ``execution_job`` of the shipped ``Definitions`` (``build_definitions``) through
     ``dagster.execute_job`` with the shipped executor (``rc2_executor``, multiprocess,
     ``max_concurrent: J``) and ``processes: P``: the run an operator's backfill of the
     tract (partition range ``g|T...y|T``) makes.

   Same backend (local, the execution config's launcher), same cluster jobs at once (J)
   and processes per job (P), same graph file.
3. Per contender: wall seconds of the subprocess, CPU seconds of its whole process tree
   (sampled with psutil: fork servers reap what they fork, so rusage alone misses the
   step processes and the jobs), of which the cluster jobs report ``jobs_cpu_seconds``
   and the rest is ``orchestration_cpu_seconds``, the 1-minute load average before and after, the RUN's
   quantum counts; for Dagster also the wall seconds of ``execute_job`` alone, the step
   count and the event-log rows. ``ratio`` = Dagster wall / ``rc2 run`` wall (target
   <= 1.2, issue 10).

The machine is shared: run it when nothing else heavy runs and record the load beside
the figures (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

TOP = Path(__file__).resolve().parents[1]
#: The RUN the benchmark graph writes into (each contender has its own repository).
OUTPUT_RUN = "u/bench/dagster-overhead"


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def prepare(work: Path, preset: str, max_detectors: int | None, patches: int | None,
            stand_in: bool) -> tuple[Path, Path, str, dict[str, Any]]:  # fmt: skip
    """Simulate, bootstrap and build the graph once; (base repo, graph, tract, info)."""
    from rc2_platform.butler import Butler
    from rc2_platform.demo import demo_where
    from rc2_platform.execution.stand_in import stand_in_graph
    from rc2_platform.graph import save_graph
    from rc2_platform.graph.builder import QuantumGraphBuilder
    from rc2_platform.ingest import bootstrap, load_bootstrap_config
    from rc2_platform.pipeline import Pipeline
    from rc2_platform.simulate import simulate

    t0 = time.perf_counter()
    survey = work / "survey"
    shutil.rmtree(survey, ignore_errors=True)
    config_path = simulate(preset, survey, seed=1, max_detectors=max_detectors).bootstrap
    config = load_bootstrap_config(config_path)
    base = work / "base_repo"
    shutil.rmtree(base, ignore_errors=True)
    bootstrap(config_path, base, processes=2, progress=False)
    tract = str(config.tracts[0])
    where, bind = demo_where(config)
    if patches:
        bind["patches"] = bind["patches"][:patches]
    with Butler(base) as butler:
        graph = QuantumGraphBuilder(
            butler, Pipeline.from_yaml("DRP-RC2"), input_collections=[config.collections.defaults],
            output_run=OUTPUT_RUN, where=where, bind=bind,
        ).build()  # fmt: skip
    if stand_in:
        graph = stand_in_graph(graph)
    path = work / "tract.qgraph"
    save_graph(graph, path)
    info = {
        "preset": preset,
        "tract": tract,
        "patches": list(bind["patches"]),
        "quanta": len(graph),
        "tasks": "stand-in" if stand_in else "science",
        "prepare_seconds": round(time.perf_counter() - t0, 1),
    }
    return base, path, tract, info


class _TreeCpu(threading.Thread):
    """Samples the CPU seconds of every process under ``pid`` (psutil, every 0.2 s).

    Fork servers reap the processes they fork, so rusage of the measured process misses
    Dagster's step processes and the jobs; this sums each process's own user + system
    time as last seen (a process's final < 0.2 s can be missed).
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.seen, self.done = pid, {}, threading.Event()

    def run(self) -> None:
        import psutil

        root = psutil.Process(self.pid)
        while not self.done.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            for proc in procs:
                try:
                    t = proc.cpu_times()
                    self.seen[(proc.pid, proc.create_time())] = t.user + t.system
                except psutil.Error:
                    pass
            self.done.wait(0.2)

    def seconds(self) -> float:
        return sum(self.seen.values())


def _timed(cmd: list[str], log: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run ``cmd``; its wall and CPU seconds (process tree, rusage) and the load."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = _load()
    start = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=TOP)
        sampler = _TreeCpu(proc.pid)
        sampler.start()
        proc.wait()
        sampler.done.set()
        sampler.join()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    reaped = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "exit": proc.returncode,
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(max(sampler.seconds(), reaped), 2),
        "cpu_seconds_reaped": round(reaped, 2),
        "processes_seen": len(sampler.seen),
        "load_before_after": [load0, _load()],
        "log": str(log),
    }


def _fresh_repo(base: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(base, target / "repo", symlinks=True)
    return target / "repo"


def _journal_figures(repo: Path) -> dict[str, Any]:
    """The RUN's final counts, cluster jobs, and the CPU and wall seconds the jobs report.

    Jobs forked from the local backend's fork server are not reaped by the measured
    process, so their CPU is not in its rusage: it is taken from their result files.
    """
    from rc2_platform.execution.journal import Journal
    from rc2_platform.execution.records import JobResult

    journal = Journal.for_run(repo, OUTPUT_RUN)
    finished = journal.last("run_finished")
    jobs, cpu, wall = 0, 0.0, 0.0
    for event in journal.events("job_finished"):
        jobs += 1
        if event.get("result"):
            result = JobResult.read(event["result"])
            cpu += result.cpu_seconds or 0.0
            wall += result.end - result.start
    return {
        "counts": dict(finished["counts"]) if finished else {},
        "cluster_jobs": jobs,
        "jobs_cpu_seconds": round(cpu, 2),
        "jobs_wall_seconds_sum": round(wall, 2),
    }


def _add_cpu(entry: dict[str, Any], repo: Path) -> dict[str, Any]:
    entry.update(_journal_figures(repo))
    entry["orchestration_cpu_seconds"] = round(entry["cpu_seconds"] - entry["jobs_cpu_seconds"], 2)
    return entry


def run_rc2(base: Path, graph: Path, work: Path, jobs: int, processes: int) -> dict[str, Any]:
    """``rc2 run`` of the graph in a fresh repository."""
    repo = _fresh_repo(base, work / "rc2")
    rc2 = Path(sys.executable).with_name("rc2")
    cmd = [str(rc2), "run", str(repo), str(graph), "--jobs", str(jobs),
           "--processes", str(processes), "--json"]  # fmt: skip
    return _add_cpu(_timed(cmd, work / "rc2" / "run.log", dict(os.environ)), repo)


def run_dagster(
    base: Path,
    graph: Path,
    tract: str,
    work: Path,
    jobs: int,
    processes: int,
    start_method: str = "shipped",
) -> dict[str, Any]:
    """The Dagster execution job over the graph, in a fresh repository and DAGSTER_HOME."""
    target = work / f"dagster-{start_method}"
    repo = _fresh_repo(base, target)
    home = target / "dagster_home"
    home.mkdir()
    shutil.copyfile(TOP / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "RC2_REPO": str(repo)}
    env.pop("RC2_REGISTRY_URL", None)
    cmd = [sys.executable, str(Path(__file__).resolve()), "_dagster", str(repo), str(graph),
           tract, "--jobs", str(jobs), "--processes", str(processes),
           "--start-method", start_method]  # fmt: skip
    entry = _timed(cmd, target / "run.log", env)
    entry["start_method"] = start_method
    inner = target / "dagster.json"
    if inner.exists():
        entry.update(json.loads(inner.read_text()))
    return _add_cpu(entry, repo)


def execution_job() -> Any:
    """The shipped execution job over ``$RC2_REPO`` (reconstructed in each step process)."""
    from rc2_platform.defs import build_definitions
    from rc2_platform.defs.resources import ButlerResource

    defs = build_definitions(ButlerResource(repo=os.environ["RC2_REPO"]))
    return defs.resolve_job_def("execution_job")


def executor_config(jobs: int, start_method: str) -> dict[str, Any]:
    """The multiprocess executor's run config: ``max_concurrent`` and, unless ``shipped``,
    a start method: ``spawn`` (Dagster's own default) or ``forkserver`` (the same as
    ``shipped`` today: ``rc2_executor``'s preloading fork server). ``batched``: the
    in-process executor (the run steps then take a whole stage, see
    :func:`prepare_config`)."""
    from rc2_platform.defs.executor import FORKSERVER

    if start_method == "batched":
        return {"in_process": {}}
    inner: dict[str, Any] = {"max_concurrent": jobs}
    if start_method == "spawn":
        inner["start_method"] = {"spawn": {}}
    elif start_method == "forkserver":
        inner["start_method"] = FORKSERVER  # what rc2_executor fills in
    return {"multiprocess": inner}


def prepare_config(jobs: int, processes: int, start_method: str) -> dict[str, Any]:
    """``prepare_execution``'s config: ``processes``; ``batched``: every cluster of a stage
    in one run step, ``jobs`` of them at once."""
    config: dict[str, Any] = {"processes": processes}
    if start_method == "batched":
        config.update(cluster_jobs_per_step=100_000, cluster_jobs_at_once=jobs)
    return config


def dagster_child(
    repo: Path, graph: Path, tract: str, jobs: int, processes: int, start_method: str
) -> None:
    """In the ``dagster`` subprocess: record the graph, execute the job, write figures."""
    import dagster as dg

    from rc2_platform.defs.graph_assets import quantum_graph
    from rc2_platform.defs.partitions import tract_range_keys

    start = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("tracts", [tract])
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                quantum_graph.key,
                partition=tract,
                metadata={"path": dg.MetadataValue.path(str(graph)), "output_run": OUTPUT_RUN},
            )
        )
        first, last = tract_range_keys(tract)
        tags = {"dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last}  # fmt: skip
        run_config = {
            "execution": {"config": executor_config(jobs, start_method)},
            "ops": {"pipeline_outputs": {"ops": {"prepare_execution": {
                "config": prepare_config(jobs, processes, start_method)}}}},
        }  # fmt: skip
        t0 = time.perf_counter()
        with dg.execute_job(
            dg.reconstructable(execution_job), instance, run_config=run_config, tags=tags,
            raise_on_error=False,
        ) as result:  # fmt: skip
            execute = time.perf_counter() - t0
            run_id, success = result.run_id, result.success
        steps = instance.get_run_step_stats(run_id)
        rows = instance.get_records_for_run(run_id, limit=1_000_000).records
        out = {
            "success": success,
            "run_id": run_id,
            "execute_job_seconds": round(execute, 2),
            "setup_seconds": round(t0 - start, 2),
            "steps": len(steps),
            "step_seconds_sum": round(
                sum((s.end_time or 0) - (s.start_time or 0) for s in steps), 1
            ),
            "event_log_rows": len(rows),
        }
    (repo.parent / "dagster.json").write_text(json.dumps(out))


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the benchmark (or, with ``_dagster``, the Dagster side)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_dagster"]:
        child = argparse.ArgumentParser()
        child.add_argument("repo", type=Path)
        child.add_argument("graph", type=Path)
        child.add_argument("tract")
        child.add_argument("--jobs", type=int, required=True)
        child.add_argument("--processes", type=int, required=True)
        child.add_argument("--start-method", default="shipped")
        a = child.parse_args(argv[1:])
        dagster_child(a.repo, a.graph, a.tract, a.jobs, a.processes, a.start_method)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/rc2_dagster_overhead"))
    parser.add_argument("--preset", default="tiny", help="rc2 simulate preset (default tiny)")
    parser.add_argument("--max-detectors", type=int, default=None)
    parser.add_argument("--patches", type=int, default=None, help="first N demo patches")
    parser.add_argument("--stand-in", action="store_true", help="stand-in tasks")
    parser.add_argument("--jobs", type=int, default=2, help="cluster jobs at once")
    parser.add_argument("--processes", type=int, default=1, help="processes per job")
    parser.add_argument(
        "--start-method",
        choices=["shipped", "spawn", "forkserver", "batched"],
        default="shipped",
        help="executor start method: the shipped default, or spawn / forkserver (preloaded); "
        "batched: in-process executor, one run step per stage running --jobs clusters at once",
    )
    parser.add_argument(
        "--only", choices=["rc2", "dagster"], default=None, help="run one contender only"
    )
    args = parser.parse_args(argv)
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    base, graph, tract, info = prepare(
        args.work, args.preset, args.max_detectors, args.patches, args.stand_in
    )
    info.update(jobs=args.jobs, processes=args.processes, cores=os.cpu_count())
    print(json.dumps({"graph": info}), flush=True)
    results: dict[str, Any] = {}
    if args.only in (None, "rc2"):
        results["rc2_run"] = run_rc2(base, graph, args.work, args.jobs, args.processes)
        print(json.dumps({"rc2_run": results["rc2_run"]}), flush=True)
    if args.only in (None, "dagster"):
        results["dagster"] = run_dagster(
            base, graph, tract, args.work, args.jobs, args.processes, args.start_method
        )
        print(json.dumps({"dagster": results["dagster"]}), flush=True)
    summary: dict[str, Any] = {"benchmark": "dagster_overhead", "graph": info, **results}
    if len(results) == 2:
        rc2, dag = results["rc2_run"], results["dagster"]
        summary["ratio_wall"] = round(dag["wall_seconds"] / rc2["wall_seconds"], 2)
        summary["ratio_cpu"] = round(dag["cpu_seconds"] / rc2["cpu_seconds"], 2)
        summary["target_met"] = summary["ratio_wall"] <= 1.2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
