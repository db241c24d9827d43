"""Ingest benchmark: bootstrap the ``rc2`` preset and register the full rings sky map.

Usage::

    python benchmarks/ingest.py --backends sqlite,postgresql [--quick] [--processes 2]
        [--sim-dir DIR] [--scope-all] [--skip-skymap] [--skip-bootstrap]

``--quick`` uses 10% of the rc2 visits and 1,000 sky-map tracts. ``--sim-dir`` reuses
(or writes once) the simulated preset there instead of a temporary directory.
``--scope-all`` bootstraps with ``skymap.scope: all`` (the full sky map inside the
bootstrap). Prints one JSON document: per backend, per-step seconds and rows/s of the
bootstrap (headers read from files) with ``registry_write_seconds`` = time inside the
registry's write calls (records, datasets, certification, datastore records; outermost
calls only, transaction commits excluded), and seconds + peak memory of the full sky
map registration. Each measurement runs in its own child process, so peak resident
memory is its own.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rc2_platform.butler import Butler
from rc2_platform.ingest import bootstrap, register_skymap
from rc2_platform.simulate import simulate
from rc2_platform_tests.databases import scratch_database

_WRITE_METHODS = (
    "insert_dimension_records", "insert_dimension_columns", "sync_dimension_record",
    "insert_datasets", "import_datasets", "certify", "associate", "register_dataset_type",
    "register_collection", "set_collection_chain", "analyze",
)  # fmt: skip


def _time_registry_writes() -> dict[str, float]:
    """Wrap the registry's write methods (and datastore record inserts) with a timer."""
    import threading

    from rc2_platform.registry import Registry

    spent = {"seconds": 0.0}
    depth = threading.local()

    def wrap(cls: Any, name: str) -> None:
        original = getattr(cls, name)

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            if getattr(depth, "n", 0):
                return original(*args, **kwargs)
            depth.n = 1
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent["seconds"] += time.perf_counter() - t0
                depth.n = 0

        setattr(cls, name, timed_call)

    for name in _WRITE_METHODS:
        wrap(Registry, name)
    wrap(Butler, "_insert_records")
    return spent


def _run_child(target: Any, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result  # type: ignore[no-any-return]


def _peak_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _bootstrap_child(config: str, url: str, repo: str, processes: int, out: Any) -> None:
    spent = _time_registry_writes()
    t0 = time.perf_counter()
    summary = bootstrap(Path(config), Path(repo), url, processes=processes, progress=False)
    steps = {
        r.step: {
            "seconds": round(r.seconds, 3),
            "ingested": r.ingested,
            "failed": len(r.failed),
            "rows": r.rows,
            "rows_per_s": round(r.rows / r.seconds) if r.seconds > 0 else None,
        }
        for r in summary.results
    }
    out.put(
        {
            "total_seconds": round(time.perf_counter() - t0, 3),
            "registry_write_seconds": round(spent["seconds"], 3),
            "peak_rss_mb": _peak_mb(),
            "steps": steps,
        }
    )


def _skymap_child(url: str, repo: str, tracts: int | None, out: Any) -> None:
    butler = Butler.create(repo, url)
    t0 = time.perf_counter()
    result = register_skymap(
        butler, "hsc_rings_v1", tracts=None if tracts is None else range(tracts)
    )
    seconds = time.perf_counter() - t0
    butler.close()
    out.put(
        {
            "seconds": round(seconds, 3),
            "rows": result.rows,
            "tracts_and_patches": result.ingested - 1,
            "rows_per_s": round(result.rows / seconds),
            "peak_rss_mb": _peak_mb(),
        }
    )


def _scope_all(config: Path, tmp: Path) -> Path:
    """A copy of ``config`` with ``skymap.scope: all`` (paths made absolute)."""
    import yaml

    data = yaml.safe_load(config.read_text())
    data["skymap"]["scope"] = "all"
    out = config.parent / "bootstrap_scope_all.yaml"
    out.write_text(yaml.safe_dump(data))
    return out


def _simulation(args: argparse.Namespace, tmp: Path) -> tuple[Path, dict[str, Any]]:
    where = Path(args.sim_dir) if args.sim_dir else tmp / "rc2"
    if (where / "bootstrap.yaml").exists():
        return where / "bootstrap.yaml", {"reused": str(where)}
    t0 = time.perf_counter()
    sim = simulate("rc2", where, scale=0.1 if args.quick else None, workers=args.processes)
    return sim.bootstrap, {**sim.summary(), "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--sim-dir", default=None)
    parser.add_argument("--scope-all", action="store_true")
    parser.add_argument("--skip-skymap", action="store_true")
    parser.add_argument("--skip-bootstrap", action="store_true")
    args = parser.parse_args()
    out: dict[str, Any] = {"quick": args.quick, "load_average": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        config, out["simulate"] = _simulation(args, tmp)
        if args.scope_all:
            config = _scope_all(config, tmp)
        for backend in args.backends.split(","):
            res: dict[str, Any] = {}
            if not args.skip_bootstrap:
                (tmp / f"db-{backend}").mkdir()
                with scratch_database(backend, tmp / f"db-{backend}") as url:
                    res["bootstrap"] = _run_child(_bootstrap_child, str(config), url,
                                                  str(tmp / f"repo-{backend}"), args.processes)  # fmt: skip
            if not args.skip_skymap:
                (tmp / f"sm-{backend}").mkdir()
                with scratch_database(backend, tmp / f"sm-{backend}") as url:
                    res["skymap"] = _run_child(_skymap_child, url, str(tmp / f"smrepo-{backend}"),
                                               1000 if args.quick else None)  # fmt: skip
            out[backend] = res
            print(json.dumps({backend: res}), flush=True, file=sys.stderr)
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
