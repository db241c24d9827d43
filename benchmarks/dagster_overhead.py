"""Dagster overhead: one tract's graph run by ``rc2 run`` and by the Dagster execution job.

Usage (one command; prints JSON lines, the last object is the summary)::

    python benchmarks/dagster_overhead.py [--work DIR] [--jobs 2] [--processes 1]
        [--rounds 2] [--mode shipped|clusters|spawn|forkserver|batched]
        [--preset tiny | --preset rc2-pixels --scale 0.2 --patch-ids 30,31,...]
        [--preset rc2 --max-detectors 8 --patches 4 --stand-in] [--reuse]

What it does:

1. ``simulate`` the preset (seed 1; ``--scale`` scales its visits), bootstrap a base
   repository (SQLite, local datastore) and build the graph of the first tract with the
   ``DRP-RC2`` pipeline over the demo's patches (``demo_where``), or ``--patch-ids``, or
   the first ``--patches N`` of them — for ``tiny``, 438 quanta of the real science tasks.
   ``--stand-in`` replaces every task by the stand-in. ``--reuse`` keeps ``WORK/survey``,
   ``WORK/base_repo`` and ``WORK/tract.qgraph`` of an earlier invocation.
2. ``--rounds`` times, alternately (A B A B: a shared machine's load then weighs on
   both), each in a fresh copy of the base repository:

   - ``rc2``: ``rc2 run REPO GRAPH --jobs J --processes P`` as a subprocess;
   - ``dagster``: in a fresh ``DAGSTER_HOME`` holding the shipped ``dagster.yaml``, an
     untimed subprocess records the graph as the tract's ``quantum_graph``
     materialization (what the instance holds when an operator executes a tract); then
     the timed subprocess opens the instance and runs ``execution_job`` of the shipped
     ``Definitions`` through ``dagster.execute_job`` over the tract's partition range
     (what a backfill of the tract runs) with ``--mode``: ``shipped`` = the defaults
     (``driver: graph``, ``rc2_executor`` then in process) with
     ``cluster_jobs_at_once: J``; ``clusters`` = a step per cluster with the shipped
     multiprocess executor (``max_concurrent: J``); ``spawn``/``forkserver`` = that with
     the start method; ``batched`` = every cluster of a stage in one step, in process.
     An untimed subprocess then reads the event log.

   Same backend (local), same cluster jobs at once (J), processes per job (P), graph file.
3. Per contender: wall seconds of the timed subprocess, CPU seconds of its whole process
   tree (psutil samples: fork servers reap what they fork, so rusage alone misses the
   jobs), of which the cluster jobs report ``jobs_cpu_seconds`` (the rest is
   ``orchestration_cpu_seconds``), the 1-minute load average before and after, the RUN's
   counts and a timeline from the RUN's journal (process start to the first job, the
   jobs' span, last job to the end); for Dagster also the seconds of imports, of opening
   the instance, each step's start and end after RUN_START, the step count and the
   event-log rows. Per pair ``ratio_wall`` = Dagster wall / ``rc2 run`` wall (target
   <= 1.2, issue 10); the summary's ``ratio_wall`` is over all pairs.
4. After the Dagster run, timed apart and not in the ratio (``figure_run``: exit, wall and
   CPU seconds): the follow-up run that ``validation_figure_sensor`` requests, which draws
   the tract's validation figure (``validation_figure_job``, in process).

The machine is shared: record the load beside the figures (docs/benchmarks.md).
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
            stand_in: bool, scale: float | None = None, patch_ids: list[int] | None = None,
            reuse: bool = False) -> tuple[Path, Path, str, dict[str, Any]]:  # fmt: skip
    """Simulate, bootstrap and build the graph once; (base repo, graph, tract, info).

    ``reuse``: keep ``WORK/survey``, ``WORK/base_repo`` and ``WORK/tract.qgraph`` of an
    earlier invocation when they exist (each step is done only when its output is missing).
    """
    from rc2_platform.butler import Butler
    from rc2_platform.demo import demo_where
    from rc2_platform.execution.stand_in import stand_in_graph
    from rc2_platform.graph import save_graph
    from rc2_platform.graph.builder import QuantumGraphBuilder
    from rc2_platform.ingest import bootstrap, load_bootstrap_config
    from rc2_platform.pipeline import Pipeline
    from rc2_platform.simulate import simulate

    t0 = time.perf_counter()
    survey, base, path = work / "survey", work / "base_repo", work / "tract.qgraph"
    info_path = work / "graph_info.json"
    if reuse and path.exists() and info_path.exists() and base.exists():
        info = json.loads(info_path.read_text())
        return base, path, str(info["tract"]), {**info, "reused": True, "prepare_seconds": 0.0}
    if not (reuse and (survey / "bootstrap.yaml").exists()):
        shutil.rmtree(survey, ignore_errors=True)
        simulate(preset, survey, seed=1, max_detectors=max_detectors, scale=scale, workers=2)
    config_path = survey / "bootstrap.yaml"
    config = load_bootstrap_config(config_path)
    if not (reuse and (base / "butler.yaml").exists()):
        shutil.rmtree(base, ignore_errors=True)
        bootstrap(config_path, base, processes=2, progress=False)
    tract = str(config.tracts[0])
    where, bind = demo_where(config)
    if patch_ids:
        bind["patches"] = list(patch_ids)
    if patches:
        bind["patches"] = bind["patches"][:patches]
    with Butler(base) as butler:
        graph = QuantumGraphBuilder(
            butler, Pipeline.from_yaml("DRP-RC2"), input_collections=[config.collections.defaults],
            output_run=OUTPUT_RUN, where=where, bind=bind,
        ).build()  # fmt: skip
    if stand_in:
        graph = stand_in_graph(graph)
    save_graph(graph, path)
    info = {
        "preset": preset,
        "scale": scale,
        "tract": tract,
        "patches": list(bind["patches"]),
        "quanta": len(graph),
        "tasks": "stand-in" if stand_in else "science",
        "prepare_seconds": round(time.perf_counter() - t0, 1),
    }
    info_path.write_text(json.dumps(info))
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
    start, start_time = time.perf_counter(), time.time()
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
        "start_time": start_time,
        "end_time": time.time(),
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
    started = journal.last("run_started")
    submitted = [e["time"] for e in journal.events("job_submitted")]
    ended = [e["time"] for e in journal.events("job_finished")]
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
        # Unix times: the RUN journaled as started, first job submitted, last job ended,
        # run_finished journaled (the timeline against the process's start and end).
        "journal_times": {
            "run_started": started["time"] if started else None,
            "first_job_submitted": min(submitted) if submitted else None,
            "last_job_finished": max(ended) if ended else None,
            "run_finished": finished["time"] if finished else None,
        },
    }


def _add_cpu(entry: dict[str, Any], repo: Path) -> dict[str, Any]:
    entry.update(_journal_figures(repo))
    entry["orchestration_cpu_seconds"] = round(entry["cpu_seconds"] - entry["jobs_cpu_seconds"], 2)
    times, t0, t1 = entry.pop("journal_times"), entry.pop("start_time"), entry.pop("end_time")
    if times["first_job_submitted"] and times["last_job_finished"]:
        # Where the wall time goes: before the first job, the jobs' span, after the last.
        entry["timeline_seconds"] = {
            "start_to_run_started": round((times["run_started"] or t0) - t0, 2),
            "start_to_first_job": round(times["first_job_submitted"] - t0, 2),
            "jobs_span": round(times["last_job_finished"] - times["first_job_submitted"], 2),
            "last_job_to_run_finished": round(
                (times["run_finished"] or t1) - times["last_job_finished"], 2
            ),
            "last_job_to_end": round(t1 - times["last_job_finished"], 2),
        }
    return entry


def run_rc2(
    base: Path, graph: Path, work: Path, jobs: int, processes: int, label: str = ""
) -> dict[str, Any]:
    """``rc2 run`` of the graph in a fresh repository."""
    repo = _fresh_repo(base, work / f"rc2{label}")
    rc2 = Path(sys.executable).with_name("rc2")
    cmd = [str(rc2), "run", str(repo), str(graph), "--jobs", str(jobs),
           "--processes", str(processes), "--json"]  # fmt: skip
    return _add_cpu(_timed(cmd, work / f"rc2{label}" / "run.log", dict(os.environ)), repo)


def run_dagster(
    base: Path,
    graph: Path,
    tract: str,
    work: Path,
    jobs: int,
    processes: int,
    mode: str = "shipped",
    label: str = "",
) -> dict[str, Any]:
    """The Dagster execution job over the graph, in a fresh repository and DAGSTER_HOME."""
    target = work / f"dagster-{mode}{label}"
    repo = _fresh_repo(base, target)
    home = target / "dagster_home"
    home.mkdir()
    shutil.copyfile(TOP / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "RC2_REPO": str(repo)}
    env.pop("RC2_REGISTRY_URL", None)
    script = [sys.executable, str(Path(__file__).resolve())]
    subprocess.run([*script, "_dagster_setup", str(graph), tract], env=env, check=True,
                   cwd=TOP, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    cmd = [*script, "_dagster", str(repo), tract, "--jobs", str(jobs),
           "--processes", str(processes), "--mode", mode]  # fmt: skip
    env["RC2_BENCH_ENTERED"] = str(time.time())
    entry = _timed(cmd, target / "run.log", env)
    subprocess.run([*script, "_dagster_report", str(repo)], env=env, check=True, cwd=TOP,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    inner = target / "dagster.json"
    if inner.exists():
        entry.update(json.loads(inner.read_text()))
    entry["mode"] = mode
    entry = _add_cpu(entry, repo)
    # Not in the ratio: the follow-up run validation_figure_sensor requests (the figure).
    figure = _timed([*script, "_dagster_figure", str(repo), tract], target / "figure.log", env)
    entry["figure_run"] = {k: figure[k] for k in ("exit", "wall_seconds", "cpu_seconds")}
    return entry


def execution_job() -> Any:
    """The shipped execution job over ``$RC2_REPO`` (reconstructed in each step process)."""
    from rc2_platform.defs import build_definitions
    from rc2_platform.defs.resources import ButlerResource

    defs = build_definitions(ButlerResource(repo=os.environ["RC2_REPO"]))
    return defs.resolve_job_def("execution_job")


#: ``--mode`` values: ``shipped`` = the execution job's defaults (``driver: graph``: one
#: step runs the whole graph with ``rc2 run``'s loop; ``rc2_executor`` then runs in
#: process); the others are ``driver: clusters`` (a step per cluster, stage by stage):
#: ``clusters`` with the shipped multiprocess executor (preloading fork server),
#: ``spawn`` / ``forkserver`` with that start method, ``batched`` in process with every
#: cluster of a stage in one step.
MODES = ("shipped", "clusters", "spawn", "forkserver", "batched")


def executor_config(jobs: int, mode: str) -> dict[str, Any] | None:
    """The ``execution`` run config of a mode (None: none given, the shipped choice)."""
    from rc2_platform.defs.executor import FORKSERVER

    if mode == "shipped":
        return None
    if mode == "batched":
        return {"in_process": {}}
    inner: dict[str, Any] = {"max_concurrent": jobs}
    if mode == "spawn":
        inner["start_method"] = {"spawn": {}}
    elif mode == "forkserver":
        inner["start_method"] = FORKSERVER  # what rc2_executor fills in
    return {"multiprocess": inner}


def prepare_config(jobs: int, processes: int, mode: str) -> dict[str, Any]:
    """``prepare_execution``'s config: ``processes`` and ``jobs`` cluster jobs at once."""
    if mode == "shipped":
        return {"processes": processes, "cluster_jobs_at_once": jobs}
    config: dict[str, Any] = {"processes": processes, "driver": "clusters"}
    if mode == "batched":
        config.update(cluster_jobs_per_step=100_000, cluster_jobs_at_once=jobs)
    return config


def dagster_setup(graph: Path, tract: str) -> None:
    """Untimed, before the run: the instance's tables, the tract partition and the graph
    recorded as its ``quantum_graph`` materialization (what an operator's instance holds
    when a tract is executed)."""
    import dagster as dg

    from rc2_platform.defs.graph_assets import quantum_graph

    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("tracts", [tract])
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                quantum_graph.key,
                partition=tract,
                metadata={"path": dg.MetadataValue.path(str(graph)), "output_run": OUTPUT_RUN},
            )
        )


def dagster_child(repo: Path, tract: str, jobs: int, processes: int, mode: str) -> None:
    """Timed: open the instance, execute the job over the tract's range; note the times."""
    entered = float(os.environ.get("RC2_BENCH_ENTERED", time.time()))
    import dagster as dg

    from rc2_platform.defs.partitions import tract_range_keys

    imported = time.time()
    with dg.DagsterInstance.get() as instance:
        first, last = tract_range_keys(tract)
        tags = {"dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last}  # fmt: skip
        run_config: dict[str, Any] = {
            "ops": {"pipeline_outputs": {"ops": {"prepare_execution": {
                "config": prepare_config(jobs, processes, mode)}}}},
        }  # fmt: skip
        executor = executor_config(jobs, mode)
        if executor is not None:
            run_config["execution"] = {"config": executor}
        launched = time.time()
        with dg.execute_job(
            dg.reconstructable(execution_job), instance, run_config=run_config, tags=tags,
            raise_on_error=False,
        ) as result:  # fmt: skip
            run_id, success = result.run_id, result.success
    out = {"success": success, "run_id": run_id, "entered": entered, "imported": imported,
           "launched": launched, "returned": time.time()}  # fmt: skip
    (repo.parent / "dagster_run.json").write_text(json.dumps(out))


def figure_definitions() -> Any:
    """The shipped definitions over ``$RC2_REPO``."""
    from rc2_platform.defs import build_definitions
    from rc2_platform.defs.resources import ButlerResource

    return build_definitions(ButlerResource(repo=os.environ["RC2_REPO"]))


def figure_job() -> Any:
    """The shipped ``validation_figure_job`` over ``$RC2_REPO``."""
    return figure_definitions().resolve_job_def("validation_figure_job")


def dagster_figure(tract: str) -> None:
    """Timed apart, after the run: the figure run ``validation_figure_sensor`` requests."""
    import dagster as dg

    from rc2_platform.defs.validation_figure import validation_figure_sensor

    with dg.DagsterInstance.get() as instance:
        context = dg.build_sensor_context(instance=instance, definitions=figure_definitions())
        with dg.partition_loading_context(dynamic_partitions_store=instance):
            requests = validation_figure_sensor.evaluate_tick(context).run_requests
        for request in requests:
            assert request.partition_key == tract
            with dg.execute_job(
                dg.reconstructable(figure_job), instance,
                tags={"dagster/partition": tract, **request.tags}, raise_on_error=True,
            ) as result:  # fmt: skip
                assert result.success


def dagster_report(repo: Path) -> None:
    """Untimed, after the run: steps, event-log rows and the run's timeline."""
    import dagster as dg

    run = json.loads((repo.parent / "dagster_run.json").read_text())
    with dg.DagsterInstance.get() as instance:
        run_id = run["run_id"]
        steps = instance.get_run_step_stats(run_id)
        rows = instance.get_records_for_run(run_id, limit=1_000_000).records
        record = instance.get_run_record_by_id(run_id)
        run_start = (record.start_time if record else None) or run["launched"]
        run_end = (record.end_time if record else None) or run["returned"]
        out = {
            "success": run["success"],
            "run_id": run_id,
            "steps": len(steps),
            "step_seconds_sum": round(
                sum((s.end_time or 0) - (s.start_time or 0) for s in steps), 1
            ),
            "event_log_rows": len(rows),
            # Seconds: Python start + imports (dagster, the definitions), opening the
            # instance until execute_job, RUN_START -> each step's start and end and the
            # run's end, the run's end until execute_job returned.
            "imports_seconds": round(run["imported"] - run["entered"], 2),
            "instance_seconds": round(run["launched"] - run["imported"], 2),
            "launch_to_run_start": round(run_start - run["launched"], 2),
            "step_timeline": {
                s.step_key: [
                    round((s.start_time or 0) - run_start, 2),
                    round((s.end_time or 0) - run_start, 2),
                ]
                for s in sorted(steps, key=lambda s: s.start_time or 0)
            },  # fmt: skip
            "run_seconds": round(run_end - run_start, 2),
            "run_end_to_return": round(run["returned"] - run_end, 2),
        }
    (repo.parent / "dagster.json").write_text(json.dumps(out))


def _pair_summary(rc2: dict[str, Any], dag: dict[str, Any]) -> dict[str, Any]:
    return {
        "rc2_wall": rc2["wall_seconds"],
        "dagster_wall": dag["wall_seconds"],
        "ratio_wall": round(dag["wall_seconds"] / rc2["wall_seconds"], 2),
        "rc2_cpu": rc2["cpu_seconds"],
        "dagster_cpu": dag["cpu_seconds"],
        "ratio_cpu": round(dag["cpu_seconds"] / rc2["cpu_seconds"], 2),
        "load_rc2": rc2["load_before_after"],
        "load_dagster": dag["load_before_after"],
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the benchmark (or, with ``_dagster``, the Dagster side)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_dagster_setup"]:
        dagster_setup(Path(argv[1]), argv[2])
        return 0
    if argv[:1] == ["_dagster_figure"]:
        dagster_figure(argv[2])
        return 0
    if argv[:1] == ["_dagster_report"]:
        dagster_report(Path(argv[1]))
        return 0
    if argv[:1] == ["_dagster"]:
        child = argparse.ArgumentParser()
        child.add_argument("repo", type=Path)
        child.add_argument("tract")
        child.add_argument("--jobs", type=int, required=True)
        child.add_argument("--processes", type=int, required=True)
        child.add_argument("--mode", default="shipped")
        a = child.parse_args(argv[1:])
        dagster_child(a.repo, a.tract, a.jobs, a.processes, a.mode)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/rc2_dagster_overhead"))
    parser.add_argument("--preset", default="tiny", help="rc2 simulate preset (default tiny)")
    parser.add_argument("--scale", type=float, default=None, help="rc2 simulate --scale")
    parser.add_argument("--max-detectors", type=int, default=None)
    parser.add_argument("--patches", type=int, default=None, help="first N demo patches")
    parser.add_argument(
        "--patch-ids", default="", help="comma-separated patches of the tract (default: demo's)"
    )
    parser.add_argument("--stand-in", action="store_true", help="stand-in tasks")
    parser.add_argument(
        "--reuse", action="store_true", help="keep WORK's survey, base repository and graph"
    )
    parser.add_argument("--jobs", type=int, default=2, help="cluster jobs at once")
    parser.add_argument("--processes", type=int, default=1, help="processes per job")
    parser.add_argument(
        "--mode",
        "--start-method",
        dest="mode",
        choices=MODES,
        default="shipped",
        help="the Dagster run: shipped defaults (one whole-graph step, in process), or a step "
        "per cluster: clusters (multiprocess, preloaded fork server), spawn, forkserver, "
        "batched (in process, one run step per stage running --jobs clusters at once)",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="rc2 run / Dagster pairs, alternated (A B A B)"
    )
    parser.add_argument(
        "--only", choices=["rc2", "dagster"], default=None, help="run one contender only"
    )
    args = parser.parse_args(argv)
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    patch_ids = [int(p) for p in args.patch_ids.split(",") if p.strip()]
    base, graph, tract, info = prepare(
        args.work, args.preset, args.max_detectors, args.patches, args.stand_in, args.scale,
        patch_ids, args.reuse,
    )  # fmt: skip
    info.update(jobs=args.jobs, processes=args.processes, cores=os.cpu_count(), mode=args.mode)
    print(json.dumps({"graph": info}), flush=True)
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        label = f"-{r + 1}"
        entry: dict[str, Any] = {"round": r + 1}
        if args.only in (None, "rc2"):
            entry["rc2_run"] = run_rc2(base, graph, args.work, args.jobs, args.processes, label)
            print(json.dumps({"round": r + 1, "rc2_run": entry["rc2_run"]}), flush=True)
        if args.only in (None, "dagster"):
            entry["dagster"] = run_dagster(
                base, graph, tract, args.work, args.jobs, args.processes, args.mode, label
            )
            print(json.dumps({"round": r + 1, "dagster": entry["dagster"]}), flush=True)
        if "rc2_run" in entry and "dagster" in entry:
            entry["pair"] = _pair_summary(entry["rc2_run"], entry["dagster"])
        rounds.append(entry)
    summary: dict[str, Any] = {"benchmark": "dagster_overhead", "graph": info}
    pairs = [e["pair"] for e in rounds if "pair" in e]
    if pairs:
        summary["pairs"] = pairs
        rc2_wall = sum(p["rc2_wall"] for p in pairs)
        summary["ratio_wall"] = round(sum(p["dagster_wall"] for p in pairs) / rc2_wall, 2)
        rc2_cpu = sum(p["rc2_cpu"] for p in pairs)
        summary["ratio_cpu"] = round(sum(p["dagster_cpu"] for p in pairs) / rc2_cpu, 2)
        summary["target_met"] = all(p["ratio_wall"] <= 1.2 for p in pairs)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
