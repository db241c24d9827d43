"""Ingest benchmark: bootstrap the ``rc2`` preset and register the full rings sky map.

Usage::

    python benchmarks/ingest.py --backends sqlite,postgresql [--quick] [--processes 2]

``--quick`` uses 10% of the rc2 visits and 1,000 sky-map tracts. Prints one JSON
document: per backend, per-step seconds and rows/s of the bootstrap (headers read from
files), and seconds + peak memory of the sky map registration (run in a child process
so its peak resident memory is its own).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from rc2_platform.butler import Butler
from rc2_platform.ingest import bootstrap, register_skymap
from rc2_platform.simulate import simulate
from rc2_platform_tests.databases import scratch_database


def _bootstrap(config: Path, url: str, repo: Path, processes: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    summary = bootstrap(config, repo, url, processes=processes, progress=False)
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
    return {"total_seconds": round(time.perf_counter() - t0, 3), "steps": steps}


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
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    )


def _skymap(url: str, repo: Path, tracts: int | None) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_skymap_child, args=(url, str(repo), tracts, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--skip-skymap", action="store_true")
    args = parser.parse_args()
    out: dict[str, Any] = {"quick": args.quick}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        sim = simulate("rc2", tmp / "rc2", scale=0.1 if args.quick else None,
                       workers=args.processes)  # fmt: skip
        out["simulate"] = {**sim.summary(), "seconds": round(time.perf_counter() - t0, 1)}
        for backend in args.backends.split(","):
            res: dict[str, Any] = {}
            (tmp / f"db-{backend}").mkdir()
            with scratch_database(backend, tmp / f"db-{backend}") as url:
                res["bootstrap"] = _bootstrap(sim.bootstrap, url, tmp / f"repo-{backend}",
                                              args.processes)  # fmt: skip
            if not args.skip_skymap:
                (tmp / f"sm-{backend}").mkdir()
                with scratch_database(backend, tmp / f"sm-{backend}") as url:
                    res["skymap"] = _skymap(url, tmp / f"smrepo-{backend}",
                                            1000 if args.quick else None)  # fmt: skip
            out[backend] = res
            print(json.dumps({backend: res}), flush=True, file=__import__("sys").stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
