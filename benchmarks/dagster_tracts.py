"""A real Dagster backfill of the ``quantum_graph`` asset over several tracts (issue 12 item 6).

Usage (one command; JSON on stdout, and in ``--out`` if given)::

    python benchmarks/dagster_tracts.py --work DIR [--tracts 9615,9697,9813]
        [--preset rc2] [--scale 1.0] [--max-detectors N] [--max-runs 2]
    python benchmarks/dagster_tracts.py --work DIR --survey SIM --repo REPO   # reuse them

What it does:

1. Unless ``--survey``/``--repo`` are given: ``rc2 simulate PRESET WORK/sim`` (seed 1; the
   ``rc2`` preset: header-only raws of the three RC2 tracts; ``--scale``/``--max-detectors``
   make it smaller) and ``rc2 bootstrap WORK/repo`` (SQLite). Not part of the figures.
2. A fresh ``DAGSTER_HOME`` (``WORK/dagster_home``) holding the shipped top-level
   ``dagster.yaml`` unchanged (SQLite storage, ``TractRunCoordinator``, at most 2 runs at
   once, one per tract; ``--max-runs`` rewrites ``max_concurrent_runs``), ``RC2_REPO`` and
   ``RC2_BOOTSTRAP`` set as the README says, ``tract_partitions_sensor`` evaluated once
   (the tracts become partitions).
3. The code location ``rc2_platform.defs`` loaded as ``dagster dev`` loads it (a gRPC code
   server subprocess); the backfill launched with the GraphQL mutation the UI's
   *Materialize → Launch backfill* sends (``launchPartitionBackfill``: asset
   ``quantum_graph``, the tracts); then the backfill daemon's and the run queue daemon's
   iterations, once a second, until the backfill and its runs are finished. Runs are
   launched by the instance's ``DefaultRunLauncher`` (a run worker process each, started by
   the code server) and execute with ``rc2_executor``.
4. Out: per run its tract (``rc2/tract``), status, wall seconds (run record start/end),
   and its ``quantum_graph`` materialization's quanta, per-task counts, file size and
   RUN; total wall seconds from launch to the last run's end, CPU seconds of the whole
   process tree (this process, the code server, the run workers and their step
   processes; sampled every 0.5 s with psutil), the peak RSS of any one process, and the
   1-minute load average before and after.

5. With ``--execute``: then a second backfill, of the four outputs over every band
   partition of the tracts (the UI's backfill of a tract's outputs): one
   ``execution_job`` run per tract, run to completion with the job's defaults (the
   shipped executor and driver, local backend); per run its tract, status, wall seconds and the band
   partitions materialized per output. This is the Dagster route of a whole tract
   (issue 12 item 2): ``--survey``/``--repo`` of an ``rc2-pixels`` bootstrap,
   ``--tracts 9615 --execute``.

Whole RC2 graphs (156,820 quanta; 6.5 min at load 10-14): the default ``--preset rc2``
without ``--scale``. The test ``rc2_platform_tests/defs/test_tract_backfill.py``
runs this script on a small version (``--scale 0.05 --max-detectors 4``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

TOP = Path(__file__).resolve().parents[1]
TRACTS = "9615,9697,9813"


def _load() -> float:
    return round(os.getloadavg()[0], 2)


class TreeSampler(threading.Thread):
    """CPU seconds and peak RSS of a process and all its descendants, sampled."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.cpu: dict[tuple[int, float], float] = {}
        self.peak_rss = 0
        self._stop_event = threading.Event()

    def sample(self) -> None:
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    key = (proc.pid, proc.create_time())
                    self.cpu[key] = times.user + times.system
                    self.peak_rss = max(self.peak_rss, proc.memory_info().rss)
            except psutil.Error:
                continue

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        self.sample()
        return round(sum(self.cpu.values()), 2)


def prepare(
    work: Path, preset: str, scale: float | None, max_detectors: int | None
) -> tuple[Path, Path]:
    """Simulate and bootstrap (not timed as part of the backfill); (bootstrap.yaml, repo)."""
    sim, repo = work / "sim", work / "repo"
    rc2 = [str(Path(sys.executable).parent / "rc2")]
    if not (sim / "bootstrap.yaml").exists():
        cmd = [*rc2, "simulate", preset, str(sim), "--seed", "1"]
        if scale:
            cmd += ["--scale", str(scale)]
        if max_detectors:
            cmd += ["--max-detectors", str(max_detectors)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    if not (repo / "butler.yaml").exists():
        subprocess.run(
            [*rc2, "bootstrap", str(repo), str(sim / "bootstrap.yaml")],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    return sim / "bootstrap.yaml", repo


def dagster_home(work: Path, max_runs: int | None) -> Path:
    """A fresh DAGSTER_HOME with the shipped dagster.yaml (max_concurrent_runs optional)."""
    home = work / "dagster_home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    text = (TOP / "dagster.yaml").read_text()
    if max_runs is not None:
        config = yaml.safe_load(text)
        config["concurrency"]["runs"]["max_concurrent_runs"] = max_runs
        text = yaml.safe_dump(config, sort_keys=False)
    (home / "dagster.yaml").write_text(text)
    return home


def _graph_figures(instance: Any, tract: str) -> dict[str, Any]:
    import dagster as dg

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("quantum_graph"), asset_partitions=[tract]),
        limit=1,
    ).records
    if not records or records[0].asset_materialization is None:
        return {}
    meta = records[0].asset_materialization.metadata
    return {
        "quanta": meta["quanta"].value,
        "per_task": meta["counts_json"].value,
        "file_bytes": meta["file_bytes"].value,
        "output_run": meta["output_run"].value,
        "graph": str(meta["path"].value),
    }


OUTPUTS = ("calexp", "deepCoadd", "deepCoadd_ref", "deepCoadd_forced_src")
BANDS = "grizy"


def backfill(
    tracts: list[str], execute: bool = False, poll: float = 1.0, timeout: float = 6 * 3600.0
) -> dict[str, Any]:
    """Launch and drive the backfill(s) in the instance of ``$DAGSTER_HOME``; the figures.

    First the ``quantum_graph`` partitions of the tracts; with ``execute`` then the four
    outputs over every band partition of those tracts (the UI's backfill of a tract's
    outputs: one execution run per tract)."""
    import dagster as dg
    from dagster._core.execution.backfill import BULK_ACTION_TERMINAL_STATUSES
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.backfill import execute_backfill_iteration
    from dagster._daemon.run_coordinator import QueuedRunCoordinatorDaemon
    from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION
    from dagster_graphql.test.utils import execute_dagster_graphql

    from rc2_platform.defs.resources import SurveyResource
    from rc2_platform.defs.tract_sensor import tract_partitions_sensor

    logger = logging.getLogger("dagster_tracts")
    with dg.DagsterInstance.get() as instance:
        tick = tract_partitions_sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, resources={"survey": SurveyResource()})
        )
        for request in tick.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions("tracts", list(request.partition_keys))
        known = instance.get_dynamic_partitions("tracts")
        missing = [t for t in tracts if t not in known]
        if missing:
            raise SystemExit(f"tracts {missing} are not in the survey's bootstrap.yaml ({known})")
        target = ModuleTarget("rc2_platform.defs", None, str(TOP), "rc2_platform")
        with create_test_daemon_workspace_context(target, instance) as workspace:
            queue = QueuedRunCoordinatorDaemon(interval_seconds=1)

            def drive(assets: list[str], partitions: list[str]) -> dict[str, Any]:
                t0 = time.time()
                result = execute_dagster_graphql(
                    workspace.create_request_context(),
                    LAUNCH_PARTITION_BACKFILL_MUTATION,
                    variables={
                        "backfillParams": {
                            "partitionNames": partitions,
                            "assetSelection": [{"path": [name]} for name in assets],
                        }
                    },
                )
                launched = (result.data or {}).get("launchPartitionBackfill") or {}
                if launched.get("__typename") != "LaunchBackfillSuccess":
                    raise SystemExit(f"backfill not launched: {launched or result.errors}")
                backfill_id = launched["backfillId"]
                most_at_once = 0
                by_backfill = dg.RunsFilter(tags={"dagster/backfill": backfill_id})
                while time.time() - t0 < timeout:
                    list(execute_backfill_iteration(workspace, logger))
                    list(queue.run_iteration(workspace))
                    runs = instance.get_runs(by_backfill)
                    running = sum(1 for r in runs if r.status.value in ("STARTING", "STARTED"))
                    most_at_once = max(most_at_once, running)
                    status = instance.get_backfill(backfill_id).status
                    if status in BULK_ACTION_TERMINAL_STATUSES and all(r.is_finished for r in runs):
                        break
                    time.sleep(poll)
                out_runs = []
                end = t0
                for run in sorted(
                    instance.get_runs(by_backfill), key=lambda r: r.tags.get("rc2/tract", "")
                ):
                    record = instance.get_run_record_by_id(run.run_id)
                    start, stop = record.start_time or t0, record.end_time or time.time()
                    end = max(end, stop)
                    entry = {
                        "rc2/tract": run.tags.get("rc2/tract"), "status": run.status.value,
                        "run_id": run.run_id, "wall_seconds": round(stop - start, 2),
                    }  # fmt: skip
                    if "dagster/partition" in run.tags:
                        entry["tract"] = run.tags["dagster/partition"]
                        entry.update(_graph_figures(instance, entry["tract"]))
                    out_runs.append(entry)
                return {
                    "backfill_id": backfill_id,
                    "backfill_status": instance.get_backfill(backfill_id).status.value,
                    "runs": out_runs,
                    "most_runs_at_once": most_at_once,
                    "backfill_wall_seconds": round(end - t0, 2),
                }

            figures = drive(["quantum_graph"], tracts)
            if execute and figures["backfill_status"] == "COMPLETED_SUCCESS":
                keys = [f"{band}|{tract}" for tract in tracts for band in BANDS]
                executed = drive(list(OUTPUTS), keys)
                for run in executed["runs"]:
                    run["materialized"] = {
                        name: sorted(
                            p for p in instance.get_materialized_partitions(dg.AssetKey(name))
                            if p.split("|")[-1] in (run["rc2/tract"] or "").split(",")
                        )
                        for name in OUTPUTS
                    }  # fmt: skip
                figures["execution"] = executed
            return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--tracts", default=TRACTS)
    parser.add_argument("--preset", default="rc2")
    parser.add_argument("--scale", type=float, default=None)
    parser.add_argument("--max-detectors", type=int, default=None)
    parser.add_argument("--survey", type=Path, default=None, help="bootstrap.yaml or its folder")
    parser.add_argument("--repo", type=Path, default=None)
    parser.add_argument("--max-runs", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--execute", action="store_true",
        help="then backfill the four outputs of the tracts (one execution run per tract)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.survey and args.repo:
        survey = args.survey.resolve()
        config = survey / "bootstrap.yaml" if survey.is_dir() else survey
        repo = args.repo.resolve()
    else:
        config, repo = prepare(work, args.preset, args.scale, args.max_detectors)
    os.environ.update(
        DAGSTER_HOME=str(dagster_home(work, args.max_runs)),
        RC2_REPO=str(repo), RC2_BOOTSTRAP=str(config),
    )  # fmt: skip
    tracts = [t for t in args.tracts.split(",") if t]
    load_before = _load()
    sampler = TreeSampler()
    sampler.start()
    wall0 = time.time()
    # Dagster's logs (and those of the code server and run workers it starts) go to
    # stderr: stdout carries only the JSON.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        figures = backfill(tracts, execute=args.execute)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    wall = time.time() - wall0
    cpu = sampler.stop()
    result = {
        "benchmark": "dagster_tracts",
        "tracts": tracts,
        "preset": args.preset if not args.survey else str(config),
        "scale": args.scale,
        "max_detectors": args.max_detectors,
        **figures,
        "quanta_total": sum(r.get("quanta", 0) for r in figures["runs"]),
        "command_wall_seconds": round(wall, 2),
        "cpu_seconds_tree": cpu,
        "peak_rss_mib": round(sampler.peak_rss / 2**20, 1),
        "load_before": load_before,
        "load_after": _load(),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    parts = [figures, *([figures.get("execution", {})] if args.execute else [])]
    ok = all(
        p.get("backfill_status") == "COMPLETED_SUCCESS"
        and all(r["status"] == "SUCCESS" for r in p.get("runs", []))
        for p in parts
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
