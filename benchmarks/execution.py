"""Execution benchmark: a tract-9615-shaped graph of stand-in tasks on the local backend.

Usage::

    python benchmarks/execution.py [--visits 49] [--detectors 104] [--patches 9] [--workers 1,2]

Builds a synthetic QuantumGraph with the shape of the RC2 pipeline on one tract (single-
frame quanta per visit x detector, warps per patch x visit, coadd quanta per patch x band,
merges per patch; the defaults give ~20,700 quanta like tract 9615), with every task a
:class:`~rc2_platform.execution.stand_in.StandInTask` and every dataset a small JSON/YAML
file (like the LSST middleware's mock tasks and mock storage classes). It runs the graph
on the local backend with the packaged clustering rules, once per worker count (cluster
jobs at once, one process each), in a fresh repository, and prints JSON: total time,
time inside task ``run``, harness overhead per quantum, files and registry rows written.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from rc2_platform.butler import Butler
from rc2_platform.execution.execution_config import load_execution_config
from rc2_platform.execution.job import JobResult
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.runner import RunOptions, run_graph
from rc2_platform.execution.stand_in import STAND_IN_CLASS
from rc2_platform.graph import Quantum, QuantumGraph, TaskSummary, output_ref, save_graph
from rc2_platform.registry.data_id import DataCoordinate as DC
from rc2_platform.registry.dataset_types import DatasetRef, DatasetType

BANDS = ("g", "r", "i", "z", "y")
RUN = "bench/run"
VD = ("instrument", "visit", "detector")
PV = ("instrument", "visit", "skymap", "tract", "patch")
PB = ("band", "skymap", "tract", "patch")
P = ("skymap", "tract", "patch")


def _records(butler: Butler, visits: int, detectors: int, patches: int) -> None:
    reg = butler.registry
    reg.insert_dimension_records("instrument", [{"instrument": "HSC"}])
    reg.insert_dimension_records("band", [{"band": b} for b in BANDS])
    reg.insert_dimension_records(
        "physical_filter",
        [{"instrument": "HSC", "physical_filter": f"HSC-{b.upper()}", "band": b} for b in BANDS],
    )
    reg.insert_dimension_records("day_obs", [{"instrument": "HSC", "day_obs": 20160101}])
    reg.insert_dimension_records(
        "detector", [{"instrument": "HSC", "detector": d} for d in range(detectors)]
    )
    reg.insert_dimension_records(
        "visit",
        [
            {
                "instrument": "HSC",
                "visit": v,
                "physical_filter": f"HSC-{BANDS[v % 5].upper()}",
                "day_obs": 20160101,
            }
            for v in range(visits)
        ],
    )
    reg.insert_dimension_records("skymap", [{"skymap": "rings"}])
    reg.insert_dimension_records("tract", [{"skymap": "rings", "tract": 9615}])
    reg.insert_dimension_records(
        "patch", [{"skymap": "rings", "tract": 9615, "patch": p} for p in range(patches**2)]
    )


def _dt(name: str, dims: tuple[str, ...]) -> DatasetType:
    return DatasetType(name, dims, "Json")


def build(root: Path, visits: int, detectors: int, patches: int) -> tuple[Path, int]:
    """Create the repository (raws included) and the graph; return (graph path, n quanta)."""
    butler = Butler.create(root / "repo")
    _records(butler, visits, detectors, patches)
    raw = _dt("raw_standin", VD)
    butler.registry.register_run("raw/all")
    butler.registry.register_dataset_type(raw)
    raws = {}
    stored = []
    for v in range(visits):
        for d in range(detectors):
            ref = output_ref(raw, DC(VD, ("HSC", v, d)), "raw/all")
            raws[v, d] = ref
            stored.append((ref, butler.datastore.put({"raw": [v, d]}, ref)))
    butler.register_outputs(stored)
    butler.close()
    quanta: list[Quantum] = []
    labels: list[tuple[str, tuple[str, ...]]] = []

    def add(
        label: str, dims: tuple[str, ...], values: tuple[Any, ...], inputs: dict, outs: dict
    ) -> dict:
        if (label, dims) not in labels:
            labels.append((label, dims))
        data_id = DC(dims, values)
        refs: dict[str, tuple[DatasetRef, ...]] = {
            c: (output_ref(_dt(n, dims), data_id, RUN),) for c, n in outs.items()
        }
        refs["metadata"] = (output_ref(_dt(f"{label}_metadata", dims), data_id, RUN),)
        quanta.append(Quantum(len(quanta), label, data_id, inputs, refs))
        return refs

    calexp = {}
    for v in range(visits):
        for d in range(detectors):
            vals: tuple[Any, ...] = ("HSC", v, d)
            isr = add("isr", VD, vals, {"raw": (raws[v, d],)}, {"out": "postISRCCD"})
            ch = add(
                "characterizeImage", VD, vals, {"inp": isr["out"]}, {"out": "icExp", "src": "icSrc"}
            )
            calexp[v, d] = add("calibrate", VD, vals, {"exp": ch["out"], "src": ch["src"]},
                               {"out": "calexp", "src": "src"})["out"][0]  # fmt: skip
    n_patch = patches**2
    for p in range(n_patch):
        det = {}
        for b_i, band in enumerate(BANDS):
            warps = []
            for v in range(b_i, visits, 5):
                if (p + v) % 6 == 5:  # each visit misses some patches (~5/6 coverage)
                    continue
                dets = tuple(
                    calexp[v, d]
                    for d in range((p * 7 + v) % detectors, detectors, max(1, detectors // 10))
                )
                warps.append(
                    add(
                        "makeWarp",
                        PV,
                        ("HSC", v, "rings", 9615, p),
                        {"calexp": dets},
                        {"out": "deepCoadd_directWarp"},
                    )["out"][0]
                )
            vals = (band, "rings", 9615, p)
            coadd = add("assembleCoadd", PB, vals, {"warps": tuple(warps)}, {"out": "deepCoadd"})[
                "out"
            ][0]
            det[band] = (
                coadd,
                add("detection", PB, vals, {"coadd": (coadd,)}, {"out": "deepCoadd_det"})["out"][0],
            )
        merged = add(
            "mergeDetections",
            P,
            ("rings", 9615, p),
            {"dets": tuple(x for _, x in det.values())},
            {"out": "deepCoadd_mergeDet"},
        )["out"][0]
        meas = {}
        for band, (coadd, _) in det.items():
            vals = (band, "rings", 9615, p)
            flux = add(
                "deblend",
                PB,
                vals,
                {"m": (merged,), "c": (coadd,)},
                {"out": "deepCoadd_deblendedFlux"},
            )["out"][0]
            meas[band] = add(
                "measure", PB, vals, {"f": (flux,), "c": (coadd,)}, {"out": "deepCoadd_meas"}
            )["out"][0]
        ref = add(
            "mergeMeasurements",
            P,
            ("rings", 9615, p),
            {"meas": tuple(meas.values())},
            {"out": "deepCoadd_ref"},
        )["out"][0]
        for band, (coadd, _) in det.items():
            add(
                "forcedPhotCoadd",
                PB,
                (band, "rings", 9615, p),
                {"r": (ref,), "c": (coadd,)},
                {"out": "deepCoadd_forced_src"},
            )
    order = ["isr", "characterizeImage", "calibrate", "makeWarp", "assembleCoadd", "detection",
             "mergeDetections", "deblend", "measure", "mergeMeasurements", "forcedPhotCoadd"]  # fmt: skip
    dims = dict(labels)
    tasks = [TaskSummary(label, STAND_IN_CLASS, dims[label], {}) for label in order]
    rank = {label: i for i, label in enumerate(order)}
    quanta.sort(key=lambda q: (rank[q.task_label], q.index))
    for i, q in enumerate(quanta):
        q.index = i
    graph = QuantumGraph(tasks, quanta, output_run=RUN, input_collections=["raw/all"])
    path = root / "bench.qgraph"
    save_graph(graph, path)
    return path, len(quanta)


def measure(root: Path, graph: Path, workers: int) -> dict[str, Any]:
    """Run the graph with ``workers`` local jobs at once; return the figures."""
    config = load_execution_config()
    start = time.perf_counter()
    summary = run_graph(
        graph, root / "repo", config=config, options=RunOptions(jobs=workers, processes=1)
    )
    total = time.perf_counter() - start
    journal = Journal.for_run(root / "repo", RUN)
    inside = jobs = 0.0
    n = 0
    for ev in journal.events("job_finished"):
        jobs += 1
        if ev.get("result"):
            for o in JobResult.read(ev["result"]).outcomes:
                inside += o.timing.get("run_seconds", 0.0)
                n += 1
    files = sum(1 for p in (root / "repo" / "bench").rglob("*") if p.is_file())
    with Butler(root / "repo") as butler, butler.registry.engine.connect() as conn:
        rows = conn.execute(sa.text("select count(*) from dataset")).scalar_one()
        rec = conn.execute(sa.text("select count(*) from file_datastore_records")).scalar_one()
    return {
        "workers": workers,
        "status": summary.status,
        "quanta": n,
        "jobs": int(jobs),
        "total_seconds": round(total, 2),
        "task_run_seconds": round(inside, 2),
        "overhead_ms_per_quantum": round(1000 * (total * workers - inside) / max(n, 1), 2),
        "wall_ms_per_quantum": round(1000 * total / max(n, 1), 2),
        "files_written": files,
        "registry_dataset_rows": rows,
        "registry_file_records": rec,
    }


def main() -> None:
    """Parse arguments, run each worker count in a fresh repository, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=49)
    parser.add_argument("--detectors", type=int, default=104)
    parser.add_argument("--patches", type=int, default=9, help="patches per side")
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    results = []
    for workers in (int(w) for w in args.workers.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            t0 = time.perf_counter()
            graph, n = build(root, args.visits, args.detectors, args.patches)
            entry = {"build_seconds": round(time.perf_counter() - t0, 2), "graph_quanta": n}
            entry.update(measure(root, graph, workers))
            results.append(entry)
            print(json.dumps(entry), flush=True)
    print(json.dumps({"benchmark": "execution", "results": results}, indent=2))


if __name__ == "__main__":
    main()
