"""Remote butler benchmark: queries/s and MB/s over loopback beside the local butler.

Usage::

    python benchmarks/remote_butler.py [--backends sqlite,postgresql] [--datasets 100000]
                                       [--files 8 --file-mb 16] [--repeats 3]

Builds a repository with ``--datasets`` registered datasets (one RUN, instrument ×
exposure × detector) and ``--files`` images of ``--file-mb`` MB, starts ``rc2 serve`` on
a free 127.0.0.1 port as a separate process (as in production), and times the same work
through the local :class:`Butler` and through :class:`RemoteButler`:

- the whole ``--datasets``-row dataset query (best of ``--repeats``);
- small queries (one exposure's rows, ``where`` with a bind value) per second;
- single-dataset lookups (``find_dataset``) per second;
- file reads: ``get`` of the images (local: read from disk; remote: download + read) and
  the raw download rate (``retrieve``) beside a local file copy.

Prints one JSON document: wall seconds, this process's CPU seconds and the server
process's CPU seconds (from /proc) beside each figure, and the machine load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from rc2_platform.butler import Butler
from rc2_platform.core import DatasetType
from rc2_platform.remote import RemoteButler
from rc2_platform.server.tokens import TokenStore, utcnow
from rc2_platform_tests.databases import scratch_database

RUN = "bench/run"
DETECTORS = 100


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(fn: Callable[[], Any], server_pid: int | None) -> dict[str, Any]:
    s0 = _proc_cpu(server_pid) if server_pid else 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    result = {"wall_s": round(wall, 4), "client_cpu_s": round(cpu, 4), "result": out}
    if server_pid:
        result["server_cpu_s"] = round(_proc_cpu(server_pid) - s0, 4)
    return result


def _best(fn: Callable[[], Any], repeats: int, server_pid: int | None) -> dict[str, Any]:
    runs = [_measure(fn, server_pid) for _ in range(repeats)]
    best = min(runs, key=lambda r: r["wall_s"])
    best["all_wall_s"] = [r["wall_s"] for r in runs]
    return best


def build_repository(root: Path, registry_url: str | None, n: int, files: int, mb: int) -> None:
    """``n`` datasets in one RUN and ``files`` images of ``mb`` MB each."""
    exposures = -(-n // DETECTORS)
    with Butler.create(root, registry_url=registry_url) as butler:
        reg = butler.registry
        reg.insert_dimension_records("instrument", [{"instrument": "HSC"}])
        reg.insert_dimension_records(
            "detector", [{"instrument": "HSC", "detector": d} for d in range(DETECTORS)]
        )
        reg.insert_dimension_records(
            "exposure", [{"instrument": "HSC", "exposure": e} for e in range(exposures)]
        )
        dt_rows = DatasetType("bench_rows", ("instrument", "exposure", "detector"), "Json")
        dt_image = DatasetType("bench_image", ("instrument", "exposure", "detector"), "Image")
        butler.register_dataset_type(dt_rows)
        butler.register_dataset_type(dt_image)
        reg.register_run(RUN)
        ids = [
            {"instrument": "HSC", "exposure": e, "detector": d}
            for e in range(exposures)
            for d in range(DETECTORS)
        ][:n]
        reg.insert_datasets(dt_rows, ids, RUN)
        side = int((mb * 1024 * 1024 / 4) ** 0.5)
        rng = np.random.default_rng(1)
        for i in range(files):
            image = rng.normal(size=(side, side)).astype(np.float32)
            butler.put(
                image, dt_image, {"instrument": "HSC", "exposure": 0, "detector": i}, run=RUN
            )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(root: Path) -> Iterator[tuple[str, int]]:
    """``rc2 serve root`` on a free loopback port; yields (repository URL, server pid)."""
    import httpx

    port = _free_port()
    rc2 = Path(sys.executable).parent / "rc2"
    proc = subprocess.Popen(
        [str(rc2), "serve", str(root), "--name", "bench", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("rc2 serve did not start")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/bench", proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def bench_backend(backend: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Every measurement on one registry backend."""
    with scratch_database(backend, workdir) as url:
        root = workdir / "repo"
        t0 = time.perf_counter()
        build_repository(
            root, None if backend == "sqlite" else url, args.datasets, args.files, args.file_mb
        )
        built = time.perf_counter() - t0
        _, token = TokenStore.for_repository(root).create(
            "bench", ["*"], utcnow() + dt.timedelta(hours=1)
        )
        out: dict[str, Any] = {"build_s": round(built, 2)}
        with (
            Butler(root) as local,
            serve(root) as (repo_url, pid),
            RemoteButler(repo_url, token=token) as remote,
        ):
            out.update(_compare(local, remote, pid, args, workdir))
        return out


def _compare(
    local: Butler, remote: RemoteButler, pid: int, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    r = args.repeats
    out: dict[str, Any] = {}

    def big(b: Any) -> Callable[[], int]:
        return lambda: len(b.query_datasets("bench_rows", collections=RUN))

    out["query_all_rows"] = {
        "local": _best(big(local), r, None),
        "remote": _best(big(remote), r, pid),
    }
    loc, rem = out["query_all_rows"]["local"], out["query_all_rows"]["remote"]
    assert loc["result"] == rem["result"] == args.datasets
    out["query_all_rows"]["remote_over_local"] = round(rem["wall_s"] / loc["wall_s"], 2)

    exposures = max(1, args.datasets // DETECTORS)
    n_small = args.small_queries

    def small(b: Any) -> Callable[[], float]:
        def run() -> float:
            for i in range(n_small):
                b.query_datasets(
                    "bench_rows", collections=RUN, where="exposure = :e", bind={"e": i % exposures}
                )
            return n_small

        return run

    def lookups(b: Any) -> Callable[[], float]:
        def run() -> float:
            for i in range(n_small):
                data_id = {
                    "instrument": "HSC",
                    "exposure": i % exposures,
                    "detector": i % DETECTORS,
                }
                assert b.registry.find_dataset("bench_rows", data_id, [RUN]) is not None
            return n_small

        return run

    for name, make in (("small_queries", small), ("lookups", lookups)):
        lo, re_ = _measure(make(local), None), _measure(make(remote), pid)
        out[name] = {
            "count": n_small,
            "local": lo | {"per_s": round(n_small / lo["wall_s"], 1)},
            "remote": re_ | {"per_s": round(n_small / re_["wall_s"], 1)},
        }

    images = local.query_datasets("bench_image", collections=RUN)
    total_mb = sum(rec.file_size for rec in local.datastore_records(images).values()) / (
        1024 * 1024
    )

    def get_all(b: Any) -> Callable[[], float]:
        return lambda: float(sum(b.get(ref).nbytes for ref in images))

    out["get_images"] = {"files": len(images), "mb": round(total_mb, 1)}
    for side, b, p in (("local", local, None), ("remote", remote, pid)):
        m = _best(get_all(b), r, p)
        out["get_images"][side] = m | {"mb_per_s": round(total_mb / m["wall_s"], 1)}

    target = workdir / "retrieved"

    def retrieve_remote() -> float:
        shutil.rmtree(target, ignore_errors=True)
        for ref in images:
            remote.retrieve(ref, target)
        return total_mb

    def copy_local() -> float:
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        for rec in local.datastore_records(images).values():
            shutil.copyfile(local.datastore.absolute(rec), target / Path(rec.path).name)
        return total_mb

    out["download"] = {"mb": round(total_mb, 1)}
    for side, fn, p in (
        ("local_copy", copy_local, None),
        ("remote_retrieve", retrieve_remote, pid),
    ):
        m = _best(fn, r, p)
        out["download"][side] = m | {"mb_per_s": round(total_mb / m["wall_s"], 1)}
    shutil.rmtree(target, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--file-mb", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small-queries", type=int, default=200)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "load_before": os.getloadavg(),
        "cpus": os.cpu_count(),
        "datasets": args.datasets,
        "backends": {},
    }
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory(prefix=f"rc2-remote-bench-{backend}-") as tmp:
            report["backends"][backend] = bench_backend(backend, args, Path(tmp))
    report["load_after"] = os.getloadavg()
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
