"""Registration benchmark: ``aggregate_run`` registering the ~51k outputs of tract 9615.

Usage::

    rc2 simulate rc2 /tmp/x/sim --tracts 9615
    rc2 bootstrap /tmp/x/repo /tmp/x/sim/bootstrap.yaml
    rc2 qgraph build /tmp/x/repo --pipeline DRP-RC2 --input HSC/defaults --output u/bench/run \\
        --where "skymap = 'hsc_rings_v1' AND tract = 9615" --save /tmp/x/g.qgraph
    python benchmarks/aggregate.py --repo /tmp/x/repo --graph /tmp/x/g.qgraph \\
        --survey /tmp/x/sim --work /tmp/x/agg [--backends sqlite,postgresql] \\
        [--records-from /tmp/x/bench/w1-forkserver/repo]

The records are those the jobs wrote: from a finished run of ``benchmarks/execution.py``
(``--records-from REPO``: its ``_runs/<run>/`` folder is copied, and the job time it
journaled is reported beside), or, by default, generated from the graph exactly as the
workers write them (every quantum succeeded, one record line per quantum, real datastore
paths). For each backend a repository holding the tract's inputs but not the outputs is
prepared (SQLite: a copy of ``--repo``'s registry; PostgreSQL: ``rc2 bootstrap`` of
``--survey`` into a fresh database), the RUN and its dataset types are registered, and
that prepared registry is kept. ``aggregate_run(provenance=False)`` is then timed
``--repeat`` times (default 3), each into a fresh copy of it (PostgreSQL: ``CREATE
DATABASE ... TEMPLATE``, then a ``CHECKPOINT`` so that no repetition pays for writing out
the bootstrap's pages) and in a fresh subprocess with the butler already open (opening it
is reported apart); the repetition of median wall time is reported, with every
repetition's figures beside it (``repetitions``). Each is followed by a re-run with its checkpoint, an idempotent
re-run without it (every dataset found registered), and the provenance write are timed.
Prints JSON: datasets, wall and CPU seconds, datasets/s (wall and per CPU second of the
aggregating process; on PostgreSQL also the CPU seconds of the database's server backend
processes, read from ``/proc`` on the same host, and datasets per client + server CPU
second), the load average before and after; the registration's wall and CPU seconds split
into reading the records (``read_*``: reading, parsing, gathering columns) and writing
them (``write_*``: the registry transactions, commits included).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rc2_platform.butler import Butler
from rc2_platform.datastore import DatastoreRecord
from rc2_platform.execution.execution_config import load_execution_config
from rc2_platform.execution.executor import QuantumOutcome, dataset_ids
from rc2_platform.execution.journal import Journal, run_directory
from rc2_platform.execution.quantum_state import QuantumState
from rc2_platform.execution.records import RecordsWriter
from rc2_platform.graph.clustering import plan_clusters
from rc2_platform.graph.io import load_graph

PG_URL = os.environ.get("RC2_BENCH_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432")


def generate_records(repo: Path, graph_path: Path) -> dict[str, Any]:
    """Write every quantum's record, per cluster of the packaged clustering, into ``repo``."""
    graph = load_graph(graph_path)
    plan = plan_clusters(graph, load_execution_config().clustering)
    journal = Journal.for_run(repo, graph.output_run)
    journal.append("run_started", run=graph.output_run, graph=str(graph_path),
                   tasks=graph.counts_by_task(), n_quanta=len(graph))  # fmt: skip
    datastore = Butler.open_datastore(repo)
    formatters: dict[str, Any] = {}
    dims = {
        r.dataset_type.name: tuple(r.dataset_type.dimensions)
        for q in graph.quanta
        for r in q.all_outputs()
    }
    for name, indexes in plan.clusters.items():
        with RecordsWriter(journal.job_dir(name, 1) / "quanta.jsonl", dims) as writer:
            writer.job_started(name, 1, 1, time.time())
            for i in indexes:
                q = graph.quanta[i]
                outcome = QuantumOutcome(
                    i, q.task_label, dict(q.data_id.to_dict()), QuantumState.SUCCEEDED,
                    timing={"start": 1.0, "end": 1.01, "wall_seconds": 0.01, "cpu_seconds": 0.01},
                )  # fmt: skip
                outcome.inputs, outcome.outputs = dataset_ids(q)
                for ref in q.all_outputs():
                    sc = ref.dataset_type.storage_class
                    fmt = formatters.get(sc) or formatters.setdefault(
                        sc, datastore.formatter_for(sc)
                    )
                    path = datastore.relative_path_for(ref, fmt.extension)
                    outcome.records.append(DatastoreRecord(ref.id, path, fmt.name, sc, 2880))
                writer.quantum(outcome)
            writer.job_ended(time.time(), {})
    return {"run": graph.output_run, "quanta": len(graph), "jobs": len(plan.clusters)}


def _prepare_target(target: Path, graph_path: Path) -> None:
    graph = load_graph(graph_path)
    with Butler(target) as butler:
        butler.registry.register_run(graph.output_run)
        for dt in {r.dataset_type for q in graph.quanta for r in q.all_outputs()}:
            butler.registry.register_dataset_type(dt)


_CHILD = """
import json, os, sys, time
from rc2_platform.butler import Butler
from rc2_platform.execution.aggregate import CHECKPOINT_FILE, aggregate_run
from rc2_platform.execution.journal import run_directory
repo, run = sys.argv[1], sys.argv[2]

def server_cpu(butler):
    # CPU seconds of this database's PostgreSQL backend processes (same host: /proc).
    engine = butler.registry.engine
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        pids = [r[0] for r in conn.exec_driver_sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")]
    total = 0.0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total

t, c = time.perf_counter(), time.process_time()
butler = Butler(repo)
reg = {"open_seconds": time.perf_counter() - t, "open_cpu_seconds": time.process_time() - c}
s0 = server_cpu(butler)
t, c = time.perf_counter(), time.process_time()
s = aggregate_run(repo, run, provenance=False, butler=butler)
reg.update({"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - c,
            "datasets": s.datasets, "registered": s.registered, "quanta": s.quanta,
            "read_seconds": s.read_seconds, "read_cpu_seconds": s.read_cpu_seconds,
            "write_seconds": s.write_seconds, "write_cpu_seconds": s.write_cpu_seconds})
if s0 is not None:
    reg["server_cpu_seconds"] = server_cpu(butler) - s0
t, c = time.perf_counter(), time.process_time()
again = aggregate_run(repo, run, provenance=False, butler=butler)
assert again.registered == 0
reg["checkpoint_rerun_seconds"] = time.perf_counter() - t
(run_directory(repo, run) / CHECKPOINT_FILE).unlink()
t, c = time.perf_counter(), time.process_time()
redo = aggregate_run(repo, run, provenance=False, butler=butler)
assert redo.registered == 0 and redo.datasets == s.datasets
reg["idempotent_rerun_seconds"] = time.perf_counter() - t
reg["idempotent_rerun_cpu_seconds"] = time.process_time() - c
t, c = time.perf_counter(), time.process_time()
p = aggregate_run(repo, run, provenance=True, butler=butler)
reg["provenance_seconds"] = time.perf_counter() - t
reg["provenance_cpu_seconds"] = time.process_time() - c
reg["provenance_rows"] = p.provenance_rows
butler.close()
print(json.dumps(reg))
"""


def measure(target: Path, run: str) -> dict[str, Any]:
    """Time ``aggregate_run`` in a fresh subprocess (imports and opening the butler excluded).

    Then again twice: with its checkpoint (nothing to read) and without (every record
    read again, every dataset found registered: the idempotent re-run after a crash).
    """
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(target), run],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode:
        raise SystemExit(f"aggregating {target} failed:\n{proc.stderr}")
    out = proc.stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["datasets_per_second"] = round(result["registered"] / result["seconds"])
    result["datasets_per_cpu_second"] = round(result["registered"] / result["cpu_seconds"])
    if "server_cpu_seconds" in result:  # PostgreSQL: client and server CPU together
        both = result["cpu_seconds"] + result["server_cpu_seconds"]
        result["datasets_per_client_and_server_cpu_second"] = round(result["registered"] / both)
    result["load_average_before_after"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}


def _sqlite_target(repo: Path, work: Path) -> Path:
    target = work / "sqlite"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for item in repo.iterdir():
        if item.name.startswith("registry.sqlite3") or item.name == "butler.yaml":
            shutil.copy2(item, target / item.name)
        elif item.name != "_runs":
            (target / item.name).symlink_to(item)
    return target


def _pg_admin(statement: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(f"{PG_URL}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(statement))
    engine.dispose()


def _postgres_target(survey: Path, work: Path, name: str) -> Path:
    _pg_admin(f"DROP DATABASE IF EXISTS {name}")
    _pg_admin(f"CREATE DATABASE {name}")
    target = work / "postgresql"
    shutil.rmtree(target, ignore_errors=True)
    from rc2_platform.ingest import bootstrap

    bootstrap(survey / "bootstrap.yaml", target, f"{PG_URL}/{name}", progress=False)
    return target


def _keep_before(backend: str, target: Path, pg_database: str) -> str:
    """A copy of the prepared registry, before the registration (repetitions, the floor)."""
    if backend == "sqlite":
        kept = target.parent / "sqlite_before.sqlite3"
        shutil.copy2(target / "registry.sqlite3", kept)
        return str(kept)
    _pg_admin(f"DROP DATABASE IF EXISTS {pg_database}_before")
    _pg_admin(f"CREATE DATABASE {pg_database}_before TEMPLATE {pg_database}")
    return f"{pg_database}_before"


def _restore_before(backend: str, before: str, target: Path, pg_database: str) -> None:
    """Put the prepared registry back (the next repetition registers into the same state).

    PostgreSQL also gets a ``CHECKPOINT``: every repetition (and the floor, whose
    ``CREATE DATABASE ... TEMPLATE`` checkpoints too) starts from a settled server, not
    one still writing out the pages of the bootstrap or of the previous repetition.
    """
    if backend == "sqlite":
        for leftover in target.glob("registry.sqlite3*"):
            leftover.unlink()
        shutil.copy2(before, target / "registry.sqlite3")
        return
    _pg_admin(f"DROP DATABASE IF EXISTS {pg_database}")
    _pg_admin(f"CREATE DATABASE {pg_database} TEMPLATE {before}")
    _pg_admin("CHECKPOINT")


def _copy_records(source: Path, target: Path, run: str) -> None:
    """The jobs' records into ``target``'s run folder, without a previous registration's state."""
    shutil.rmtree(run_directory(target, run), ignore_errors=True)
    shutil.copytree(run_directory(source, run), run_directory(target, run))
    for leftover in ("aggregated.json", "aggregate.lock", "lock"):
        (run_directory(target, run) / leftover).unlink(missing_ok=True)


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The repetition of median wall time, with every repetition's figures beside it."""
    ranked = sorted(runs, key=lambda r: r["seconds"])
    chosen = dict(ranked[(len(ranked) - 1) // 2])
    chosen["repetitions"] = [
        {k: r.get(k) for k in ("seconds", "cpu_seconds", "server_cpu_seconds",
                               "datasets_per_second", "load_average_before_after")}
        for r in runs
    ]  # fmt: skip
    return chosen


def _floor(backend: str, before: str, target: Path, pg_database: str, run: str) -> dict[str, Any]:
    """The database's floor for the same rows (``registration_floor.py``)."""
    import sqlalchemy as sa
    from registration_floor import postgres_floor, sqlite_floor

    if backend == "sqlite":
        floor = sqlite_floor(Path(before), target / "registry.sqlite3", run)
    else:
        url = sa.make_url(PG_URL)
        psql = ["psql", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432)]
        psql += ["-U", url.username or "postgres"]
        floor = postgres_floor(psql, before, pg_database, run)
    return floor


def main() -> None:
    """Parse arguments, prepare the records and each backend's repository, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True, help="bootstrapped SQLite repository")
    parser.add_argument("--graph", type=Path, required=True, help="the tract's graph")
    parser.add_argument("--survey", type=Path, help="rc2 simulation (PostgreSQL bootstrap)")
    parser.add_argument("--work", type=Path, required=True, help="scratch directory")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--records-from", type=Path, help="repository of a finished run")
    parser.add_argument("--pg-database", default=f"rc2_agg_bench_{os.getpid()}",
                        help="scratch PostgreSQL database (dropped at the end)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3,
                        help="registrations per backend, each into the same prepared registry; "
                        "the median's figures are reported, every one's beside")  # fmt: skip
    parser.add_argument("--floor", action="store_true",
                        help="also time the database's floor (registration_floor.py)")  # fmt: skip
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    run = load_graph(args.graph).output_run
    source = args.work / "records"
    info: dict[str, Any] = {"benchmark": "aggregate", "run": run}
    if args.records_from:
        shutil.rmtree(source, ignore_errors=True)
        shutil.copytree(run_directory(args.records_from, run), run_directory(source, run))
        journal = Journal.for_run(source, run)
        info["jobs_wall_seconds"] = round(
            (journal.last("run_finished") or {}).get("time", 0.0)
            - (journal.last("run_started") or {}).get("time", 0.0), 2)  # fmt: skip
    elif not run_directory(source, run).exists():
        source.mkdir(parents=True, exist_ok=True)
        shutil.copy2(args.repo / "butler.yaml", source / "butler.yaml")
        t0 = time.perf_counter()
        info["generated"] = generate_records(source, args.graph)
        info["generated"]["seconds"] = round(time.perf_counter() - t0, 2)
    results = {}
    for backend in args.backends.split(","):
        target = (
            _sqlite_target(args.repo, args.work)
            if backend == "sqlite"
            else _postgres_target(args.survey or Path(), args.work, args.pg_database)
        )
        try:
            _prepare_target(target, args.graph)
            before = _keep_before(backend, target, args.pg_database)
            runs = []
            for _ in range(args.repeat):
                _restore_before(backend, before, target, args.pg_database)
                _copy_records(source, target, run)
                runs.append(measure(target, run))
            results[backend] = found = _median_run(runs)
            if args.floor:
                found.update(_floor(backend, before, target, args.pg_database, run))
                found["floor_datasets_per_second"] = round(
                    found["registered"] / found["floor_seconds"]
                )
        finally:
            if backend != "sqlite":
                _pg_admin(f"DROP DATABASE IF EXISTS {args.pg_database}")
                _pg_admin(f"DROP DATABASE IF EXISTS {args.pg_database}_before")
        print(json.dumps({backend: results[backend]}), flush=True)
    print(json.dumps({**info, "results": results}, indent=2))


if __name__ == "__main__":
    main()
