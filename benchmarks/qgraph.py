"""Benchmark: QuantumGraph generation for RC2 tract 9615, on SQLite and PostgreSQL.

Run::

    python benchmarks/qgraph.py [--backends sqlite,postgresql] [--survey DIR] [--out result.json]
    python benchmarks/qgraph.py --synthetic   # the older synthetic registry, no bootstrap

By default the ``rc2`` preset is simulated for tract 9615 (header-only raws, ~35 s; or
reuse ``--survey DIR`` written by ``rc2 simulate rc2 DIR --tracts 9615``) and bootstrapped
into a fresh repository per backend with ``rc2_platform.ingest.bootstrap``; the graph of
the whole DRP-RC2 pipeline over ``skymap = 'hsc_rings_v1' AND tract = 9615`` is then
built twice in fresh subprocesses: right after the bootstrap, and after an explicit
``ANALYZE`` (planner statistics refreshed). Each build reports seconds, peak RSS, SQL
statements, graph file size and the time to open the file and fetch one quantum.
JSON goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import lsst.sphgeom as sg
import sqlalchemy as sa

from rc2_platform.pipeline import Pipeline
from rc2_platform.registry import CollectionType, Registry, Timespan

WHERE = "skymap = 'bench' AND tract = 0"
INPUTS = ["HSC/raw", "HSC/calib", "aux"]
BANDS = {"g": "HSC-G", "r": "HSC-R", "i": "HSC-I", "z": "HSC-Z", "y": "HSC-Y"}
N_DET_X, N_DET_Y, DET = 13, 8, 0.14  # 104 detectors of 0.14 deg: a 1.8 x 1.1 deg focal plane
PATCH = 0.2  # 9 x 9 patches of 0.2 deg: a 1.8 deg tract
POSTGRES_URL = os.environ.get(
    "RC2_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
)


def box(ra: float, dec: float, w: float, h: float | None = None) -> sg.ConvexPolygon:
    h = w if h is None else h
    corners = [(ra, dec), (ra + w, dec), (ra + w, dec + h), (ra, dec + h)]
    return sg.ConvexPolygon([sg.UnitVector3d(sg.LonLat.fromDegrees(a, b)) for a, b in corners])


def fill(reg: Registry) -> None:
    """Insert an RC2-scale tract (see the module docstring)."""
    import random

    rng = random.Random(9615)
    reg.insert_dimension_records("instrument", [{"instrument": "HSC"}])
    reg.insert_dimension_records("band", [{"band": b} for b in BANDS])
    reg.insert_dimension_records(
        "physical_filter",
        [{"instrument": "HSC", "physical_filter": f, "band": b} for b, f in BANDS.items()],
    )
    dets = list(range(N_DET_X * N_DET_Y))
    reg.insert_dimension_records("detector", [{"instrument": "HSC", "detector": d} for d in dets])
    reg.insert_dimension_records("day_obs", [{"instrument": "HSC", "day_obs": 20150101}])
    visits, vdr = [], []
    t0 = 1_420_070_400 * 10**9
    for k, (_band, pf) in enumerate(BANDS.items()):
        for j in range(10):
            v = 1000 + 10 * k + j
            ra0 = 0.9 - N_DET_X * DET / 2 + rng.uniform(-0.3, 0.3)
            dec0 = 0.9 - N_DET_Y * DET / 2 + rng.uniform(-0.3, 0.3)
            ts = Timespan(t0 + v * 10**12, t0 + v * 10**12 + 200 * 10**9)
            visits.append({"instrument": "HSC", "physical_filter": pf, "day_obs": 20150101,
                           "timespan": ts, "id": v, "region": box(ra0, dec0, N_DET_X * DET, N_DET_Y * DET)})  # fmt: skip
            for d in dets:
                x, y = d % N_DET_X, d // N_DET_X
                vdr.append({"instrument": "HSC", "visit": v, "detector": d,
                            "region": box(ra0 + x * DET, dec0 + y * DET, DET * 0.98)})  # fmt: skip
    base = [
        {k: r[k] for k in ("instrument", "physical_filter", "day_obs", "timespan")} for r in visits
    ]
    reg.insert_dimension_records(
        "exposure", [{**b, "exposure": r["id"]} for b, r in zip(base, visits, strict=True)]
    )
    reg.insert_dimension_records(
        "visit",
        [{**b, "visit": r["id"], "region": r["region"]} for b, r in zip(base, visits, strict=True)],
    )
    reg.insert_dimension_records(
        "visit_definition",
        [{"instrument": "HSC", "exposure": r["id"], "visit": r["id"]} for r in visits],
    )
    reg.insert_dimension_records("visit_detector_region", vdr)
    reg.insert_dimension_records("skymap", [{"skymap": "bench"}])
    reg.insert_dimension_records(
        "tract", [{"skymap": "bench", "tract": 0, "region": box(0, 0, 9 * PATCH)}]
    )
    reg.insert_dimension_records(
        "patch",
        [{"skymap": "bench", "tract": 0, "patch": p, "region": box((p % 9) * PATCH, (p // 9) * PATCH, PATCH)}
         for p in range(81)],
    )  # fmt: skip
    graph = Pipeline.from_yaml("DRP-RC2").to_graph()
    for name in graph.overall_inputs:
        reg.register_dataset_type(graph.dataset_types[name].dataset_type)
    for run in ("HSC/raw", "HSC/calib/run", "aux"):
        reg.register_run(run)
    reg.register_collection("HSC/calib", CollectionType.CALIBRATION)
    reg.insert_datasets(
        "raw",
        [{"instrument": "HSC", "exposure": r["visit"], "detector": r["detector"]} for r in vdr],
        "HSC/raw",
    )
    always = Timespan()
    for name in ("bias", "dark"):
        reg.certify(
            "HSC/calib",
            reg.insert_datasets(
                name, [{"instrument": "HSC", "detector": d} for d in dets], "HSC/calib/run"
            ),
            always,
        )
    flats = [
        {"instrument": "HSC", "physical_filter": f, "detector": d}
        for f in BANDS.values()
        for d in dets
    ]
    reg.certify("HSC/calib", reg.insert_datasets("flat", flats, "HSC/calib/run"), always)
    reg.insert_datasets("skyMap", [{"skymap": "bench"}], "aux")
    reg.insert_datasets(
        "brightObjectMask", [{"skymap": "bench", "tract": 0, "patch": p} for p in range(81)], "aux"
    )
    pix = sg.HtmPixelization(7)
    shards = [i for b, e in pix.envelope(box(-1, -1, 4)).ranges() for i in range(b, e)]
    reg.insert_datasets("synth_refcat", [{"htm7": i} for i in shards], "aux")
    reg.analyze()


def measure(
    url: str, out_dir: Path, where: str = WHERE, inputs: list[str] = INPUTS
) -> dict[str, object]:
    """Build, save, reload and fetch one quantum (run in a fresh subprocess)."""
    from rc2_platform.graph import QuantumGraphReader, save_graph
    from rc2_platform.graph.builder import QuantumGraphBuilder

    pipeline = Pipeline.from_yaml("DRP-RC2")
    reg = Registry.open(url)
    statements = [0]

    def count(*_args: object) -> None:
        statements[0] += 1

    sa.event.listen(reg.engine, "before_cursor_execute", count)
    start = time.perf_counter()
    graph = QuantumGraphBuilder(reg, pipeline, inputs, "bench/run", where).build()
    seconds = time.perf_counter() - start
    path = out_dir / f"bench-{uuid.uuid4().hex[:6]}.qgraph"
    size = save_graph(graph, path)
    start = time.perf_counter()
    with QuantumGraphReader(path) as reader:
        reader.read_quanta([len(graph) // 2])
    fetch = time.perf_counter() - start
    reg.close()
    return {
        "build_seconds": round(seconds, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "sql_statements": statements[0],
        "quanta": len(graph),
        "counts": graph.counts_by_task(),
        "file_bytes": size,
        "bytes_per_quantum": round(size / max(len(graph), 1), 1),
        "load_and_fetch_one_seconds": round(fetch, 4),
    }


def _backend_url(backend: str, tmp: Path) -> tuple[str, sa.Engine | None, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'bench.sqlite3'}", None, None
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"rc2b_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    return (
        sa.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False),
        admin,
        name,
    )


def run_backend(backend: str, tmp: Path) -> dict[str, object]:
    """Fill a fresh database of ``backend`` and measure the build in a subprocess."""
    url, admin, name = _backend_url(backend, tmp)
    try:
        start = time.perf_counter()
        reg = Registry.create(url)
        fill(reg)
        reg.close()
        fill_seconds = time.perf_counter() - start
        proc = subprocess.run(
            [sys.executable, __file__, "--measure", url, "--tmp", str(tmp)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        result = json.loads(proc.stdout)
        result["fill_seconds"] = round(fill_seconds, 1)
        return {"backend": backend, **result}
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            admin.dispose()


RC2_WHERE = "skymap = 'hsc_rings_v1' AND tract = 9615"
RC2_INPUTS = ["HSC/defaults"]


def _measure_in_subprocess(url: str, tmp: Path, real: bool) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--measure", url, "--tmp", str(tmp)]
    if real:
        cmd.append("--real")
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return dict(json.loads(proc.stdout))


def run_rc2_backend(backend: str, survey: Path, tmp: Path) -> dict[str, object]:
    """Bootstrap the rc2 survey into a fresh repository of ``backend`` and measure builds."""
    from rc2_platform.butler import Butler
    from rc2_platform.ingest import bootstrap

    url, admin, name = _backend_url(backend, tmp)
    repo = tmp / f"repo-{backend}"
    try:
        start = time.perf_counter()
        bootstrap(
            survey / "bootstrap.yaml",
            repo,
            None if backend == "sqlite" else url,
            progress=False,
        )
        boot_seconds = time.perf_counter() - start
        with Butler(repo) as butler:
            reg_url = butler.registry.engine.url.render_as_string(hide_password=False)
        fresh = _measure_in_subprocess(reg_url, tmp, real=True)
        with Butler(repo) as butler:
            butler.registry.analyze()
        analyzed = _measure_in_subprocess(reg_url, tmp, real=True)
        return {
            "backend": backend,
            "bootstrap_seconds": round(boot_seconds, 1),
            "after_bootstrap": fresh,
            "after_analyze": analyzed,
        }
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--real", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--survey", type=Path, help="Reuse an `rc2 simulate rc2` output folder.")
    parser.add_argument(
        "--synthetic", action="store_true", help="Use the synthetic registry (no bootstrap)."
    )
    args = parser.parse_args()
    if args.measure:
        if args.real:
            print(json.dumps(measure(args.measure, args.tmp, RC2_WHERE, RC2_INPUTS)))
        else:
            print(json.dumps(measure(args.measure, args.tmp)))
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic:
            for backend in args.backends.split(","):
                results.append(run_backend(backend.strip(), Path(tmp)))
        else:
            survey = args.survey
            if survey is None:
                from rc2_platform.simulate import simulate

                survey = Path(tmp) / "survey"
                simulate("rc2", survey, seed=1, tracts=[9615])
            for backend in args.backends.split(","):
                results.append(run_rc2_backend(backend.strip(), survey, Path(tmp)))
    text = json.dumps({"benchmark": "qgraph", "results": results}, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
