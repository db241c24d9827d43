"""Registry benchmark: bulk dataset insert, chain read-back, single lookups, survey records.

Usage::

    python benchmarks/registry.py --backends sqlite,postgresql,mariadb [--datasets 100000]
    python benchmarks/registry.py --backends sqlite,postgresql --datasets-only
    python benchmarks/registry.py --backends sqlite,postgresql --skymap [--tracts N]

Prints one JSON document on stdout. Server URLs come from RC2_TEST_POSTGRES_URL and
RC2_TEST_MYSQL_URL (defaults: the local test servers); a scratch database is created
and dropped for each run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import lsst.sphgeom as sg
import sqlalchemy as sa

from rc2_platform.registry import CollectionType, DatasetType, Registry, Timespan
from rc2_platform_tests.databases import scratch_database


class _Skip(Exception):
    pass


def _box(ra: float, dec: float, w: float) -> sg.ConvexPolygon:
    corners = [(ra, dec), (ra + w, dec), (ra + w, dec + w), (ra, dec + w)]
    return sg.ConvexPolygon([sg.UnitVector3d(sg.LonLat.fromDegrees(a, b)) for a, b in corners])


_CPU: dict[int, float] = {}


def _timed(fn: Any) -> tuple[float, Any]:
    """Wall seconds of ``fn()`` and its result; its process CPU seconds go to ``_CPU``."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    _CPU[id(fn)] = time.process_time() - c0
    return time.perf_counter() - t0, out


def _cpu(fn: Any) -> float:
    """This process's CPU seconds in the last :func:`_timed` call of ``fn``.

    On a shared machine wall time depends on the other jobs; the CPU time of the
    benchmark process (all the work on SQLite, the client side on servers) does less.
    """
    return round(_CPU.pop(id(fn)), 3)


def bench_datasets(reg: Registry, n: int, lookups: int) -> dict[str, Any]:
    """Insert ``n`` datasets, read them back through a 3-collection chain, look some up."""
    detectors = 104
    visits = math.ceil(n / detectors)
    reg.insert_dimension_records("instrument", [{"instrument": "HSC"}])
    reg.insert_dimension_records(
        "detector", [{"instrument": "HSC", "detector": d} for d in range(detectors)]
    )
    reg.insert_dimension_records(
        "exposure", [{"instrument": "HSC", "exposure": e} for e in range(visits)]
    )
    reg.register_dataset_type(
        DatasetType("raw", ("instrument", "exposure", "detector"), "ExposureF")
    )
    for run in ("run/a", "run/b", "run/c"):
        reg.register_run(run)
    reg.register_collection("chain", CollectionType.CHAINED)
    reg.set_collection_chain("chain", ["run/a", "run/b", "run/c"])
    ids = [
        {"instrument": "HSC", "exposure": e, "detector": d}
        for e in range(visits)
        for d in range(detectors)
    ][:n]
    # A few datasets in the first two runs so the chain really has to be resolved.
    reg.insert_datasets("raw", ids[:100], "run/a")
    reg.insert_datasets("raw", ids[100:200], "run/b")

    def insert() -> Any:
        return reg.insert_datasets("raw", ids, "run/c")

    def read() -> Any:
        return reg.find_datasets("raw", "chain")

    t_insert, _ = _timed(insert)
    t_read, found = _timed(read)
    assert len(found) == n, (len(found), n)
    assert sum(r.run != "run/c" for r in found.values()) == 200
    rng = random.Random(1)
    sample = [ids[rng.randrange(n)] for _ in range(lookups)]
    reg.find_dataset("raw", sample[0], "chain")

    def lookup() -> Any:
        return [reg.find_dataset("raw", d, "chain") for d in sample]

    t_lookup, hits = _timed(lookup)
    assert all(h is not None for h in hits)
    return {
        "insert_datasets": {
            "rows": n,
            "seconds": round(t_insert, 3),
            "rows_per_s": round(n / t_insert),
            "cpu_seconds": _cpu(insert),
        },
        "read_through_chain": {
            "rows": n,
            "seconds": round(t_read, 3),
            "rows_per_s": round(n / t_read),
            "cpu_seconds": _cpu(read),
        },
        "single_lookups": {
            "lookups": lookups,
            "seconds": round(t_lookup, 3),
            "per_s": round(lookups / t_lookup),
            "cpu_seconds": _cpu(lookup),
        },
    }


def bench_survey(reg: Registry, visits: int, detectors: int) -> dict[str, Any]:
    """Insert a synthetic survey (visits x detectors with regions) and a sky map tract."""
    reg.insert_dimension_records("band", [{"band": "i"}], skip_existing=True)
    reg.insert_dimension_records(
        "physical_filter", [{"instrument": "HSC", "physical_filter": "HSC-I", "band": "i"}]
    )
    reg.insert_dimension_records("day_obs", [{"instrument": "HSC", "day_obs": 20200101}])
    reg.insert_dimension_records("skymap", [{"skymap": "rings"}])
    t0 = time.perf_counter()
    reg.insert_dimension_records(
        "tract",
        [{"skymap": "rings", "tract": t, "region": _box(t * 1.5, -1, 1.6)} for t in range(8)],
    )
    patches = [
        {
            "skymap": "rings",
            "tract": t,
            "patch": py * 9 + px,
            "region": _box(t * 1.5 + px * 0.18, -1 + py * 0.18, 0.19),
        }
        for t in range(8)
        for py in range(9)
        for px in range(9)
    ]
    reg.insert_dimension_records("patch", patches)
    t_skymap = time.perf_counter() - t0
    side = math.isqrt(detectors) + 1
    visit_rows, vdr_rows = [], []
    rng = random.Random(2)
    for v in range(visits):
        ra, dec = rng.uniform(0, 10.5), rng.uniform(-1, 0.5)
        visit_rows.append(
            {
                "instrument": "HSC",
                "visit": v,
                "physical_filter": "HSC-I",
                "day_obs": 20200101,
                "region": _box(ra, dec, 1.5),
                "timespan": Timespan(v * 10**9, v * 10**9 + 30 * 10**9),
            }
        )
        w = 1.5 / side
        for d in range(detectors):
            vdr_rows.append(
                {
                    "instrument": "HSC",
                    "visit": v,
                    "detector": d,
                    "region": _box(ra + (d % side) * w, dec + (d // side) * w, w),
                }
            )
    t_visit, _ = _timed(lambda: reg.insert_dimension_records("visit", visit_rows))
    t_vdr, _ = _timed(lambda: reg.insert_dimension_records("visit_detector_region", vdr_rows))
    with reg.engine.connect() as conn:
        n_overlaps = sum(
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in reg.schema.overlaps.values()
        )
    total = t_skymap + t_visit + t_vdr
    rows = len(patches) + 8 + visits + len(vdr_rows)
    return {
        "survey_records": {
            "visits": visits,
            "detectors": detectors,
            "patches": len(patches),
            "records": rows,
            "overlap_rows": n_overlaps,
            "seconds": round(total, 3),
            "records_per_s": round(rows / total),
            "seconds_skymap": round(t_skymap, 3),
            "seconds_visits": round(t_visit, 3),
            "seconds_visit_detector_regions": round(t_vdr, 3),
        }
    }


def bench_skymap(reg: Registry, tracts: int | None) -> dict[str, Any]:
    """Register the rings sky map (all tracts, or the first ``tracts``) columnar."""
    import resource

    import numpy as np

    from rc2_platform.skymap import load_skymap
    from rc2_platform.skymap.bulk import iter_patch_records, tract_records

    skymap = load_skymap()
    ids = None if tracts is None else np.arange(tracts)
    t0 = time.perf_counter()
    reg.insert_dimension_records("skymap", [{"skymap": skymap.name}])
    tr = tract_records(skymap, ids)
    reg.insert_dimension_columns(
        "tract", {"skymap": skymap.name, "tract": tr.tract, "region": tr.regions}
    )
    n_patches = 0
    with reg.transaction():
        for chunk in iter_patch_records(skymap, ids, chunk_tracts=1000):
            n_patches += reg.insert_dimension_columns(
                "patch",
                {
                    "skymap": skymap.name,
                    "tract": chunk.tract,
                    "patch": chunk.patch,
                    "cell_x": chunk.cell_x,
                    "cell_y": chunk.cell_y,
                    "region": chunk.regions,
                },
            )
    seconds = time.perf_counter() - t0
    with reg.engine.connect() as conn:
        n_ovl = conn.execute(
            sa.select(sa.func.count()).select_from(reg.schema.overlaps["ovl_patch_htm7"])
        ).scalar_one()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "skymap": {
            "tracts": len(tr),
            "patches": n_patches,
            "patch_htm7_rows": n_ovl,
            "seconds": round(seconds, 3),
            "peak_rss_mib": round(rss),
        }
    }


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run every benchmark on one backend in a scratch database."""
    import pytest

    with tempfile.TemporaryDirectory() as tmp:
        try:
            with scratch_database(backend, Path(tmp)) as url:
                reg = Registry.create(url)
                try:
                    if args.skymap:
                        return bench_skymap(reg, args.tracts)
                    out = bench_datasets(reg, args.datasets, args.lookups)
                    if not args.datasets_only:
                        out.update(bench_survey(reg, args.visits, args.detectors))
                finally:
                    reg.close()
                return out
        except pytest.skip.Exception as exc:
            return {"skipped": str(exc)}


def main() -> None:
    """Parse arguments, run the benchmarks, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", default="sqlite,postgresql,mariadb")
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=2_000)
    parser.add_argument("--visits", type=int, default=1_000)
    parser.add_argument("--detectors", type=int, default=104)
    parser.add_argument(
        "--skymap", action="store_true", help="only register the rings sky map (peak RSS)"
    )
    parser.add_argument("--tracts", type=int, default=None, help="--skymap: first N tracts")
    parser.add_argument(
        "--datasets-only", action="store_true", help="skip the survey-records benchmark"
    )
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for backend in args.backends.split(","):
        load_before = os.getloadavg()[0]
        results[backend] = run_backend(backend, args)
        # Two cores shared with other work: say how busy the machine was.
        results[backend]["load_average_1min"] = [
            round(load_before, 2),
            round(os.getloadavg()[0], 2),
        ]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
