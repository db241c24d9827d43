"""Kill ``rc2 run`` (the orchestrator) at crash points, resume, check registry and disk.

Run as a program so that no process in it has started a fork server before the forks
(pytest may have, for earlier execution tests; a forked child cannot use its parent's):
every run (counted, killed, resumed) is a forked child starting its own jobs, and this
process only prepares repositories and checks them. Prints one JSON document::

    python -m rc2_platform_tests.hostile.run_kills WORKDIR --kills 20 --seed 3 [--postgres URL]

The graph is the execution tests' small stand-in graph (7 quanta in 4 clusters). Jobs of
a killed orchestrator keep running (own sessions): before resuming, the harness waits
until no process holds a file of the RUN's job folders open.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from rc2_platform.core import crash_points
from rc2_platform.execution.runner import RunOptions, run_graph
from rc2_platform_tests.execution.helpers import make_config, make_graph, make_repo
from rc2_platform_tests.hostile.crash_support import check_consistency, kill_points, run_killed

__all__ = ["main"]


def _holders(folder: Path) -> list[int]:
    """Processes (not this one) holding a file under ``folder`` open."""
    prefix = str(folder.resolve())
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{name}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{name}/fd/{fd}").startswith(prefix):
                    pids.append(int(name))
                    break
            except OSError:
                continue
    return pids


def wait_for_orphans(repo: Path, limit: float = 120.0) -> None:
    """Wait until the jobs of a killed orchestrator have ended (no open job files)."""
    deadline = time.monotonic() + limit
    while _holders(repo / "_runs"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs still hold files under {repo / '_runs'}")
        time.sleep(0.05)


def _fresh(folder: Path, url: str | None) -> tuple[Path, Path]:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    repo = folder / "repo"
    if url is not None:
        from rc2_platform.butler import Butler

        Butler.create(repo, url).close()
    butler, raws = make_repo(repo) if url is None else _populate(repo)
    butler.close()
    make_graph(folder / "g.qgraph", raws)
    return repo, folder / "g.qgraph"


def _populate(repo: Path) -> tuple[object, dict[int, object]]:
    """``make_repo`` on an existing (server) repository."""
    from rc2_platform.butler import Butler
    from rc2_platform_tests.execution import helpers

    butler = Butler(repo)
    butler.registry.insert_dimension_records("instrument", [{"instrument": "HSC"}])
    butler.registry.insert_dimension_records(
        "detector", [{"instrument": "HSC", "detector": d} for d in helpers.DETECTORS]
    )
    butler.registry.register_run(helpers.INPUT_RUN)
    butler.registry.register_dataset_type(helpers.RAW)
    raws = {
        d: butler.put(
            {"pixels": [d]},
            helpers.RAW,
            {"instrument": "HSC", "detector": d},
            run=helpers.INPUT_RUN,
        )  # fmt: skip
        for d in helpers.DETECTORS
    }
    return butler, raws


def _run(graph: Path, repo: Path, resume: bool = False) -> None:
    summary = run_graph(graph, repo, config=make_config(), options=RunOptions(resume=resume))
    if summary.status != "succeeded":
        raise RuntimeError(f"run ended {summary.status}: {summary.counts}")


def _count(graph: Path, repo: Path) -> int:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            crash_points.reset()
            _run(graph, repo)
            os.write(write, str(crash_points.passed()).encode())
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as fh:
        return int(fh.read() or 0)


def _resume(graph: Path, repo: Path) -> int:
    return run_killed(10**9, lambda: _run(graph, repo, resume=True))


def main(argv: list[str] | None = None) -> int:
    """Run the kills; print the JSON summary; exit 1 if any repository was left inconsistent."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--margin", type=int, default=0,
        help="Draw points only among the first (points - MARGIN): under load a run may "
        "pass a few points less (fewer registrations), and a point never reached is no kill",
    )  # fmt: skip
    parser.add_argument("--postgres", default=None, help="Server URL of a scratch database each")
    args = parser.parse_args(argv)
    urls: list[str | None] = [None] * (args.kills + 1)
    cleanup = None
    if args.postgres:
        from contextlib import ExitStack

        from rc2_platform_tests.databases import scratch_database

        cleanup = ExitStack()
        urls = [
            cleanup.enter_context(scratch_database("postgresql", args.workdir / f"db{i}"))
            for i in range(args.kills + 1)
        ]
    t0 = time.monotonic()
    cases = []
    try:
        repo, graph = _fresh(args.workdir / "clean", urls[0])
        total = _count(graph, repo)
        clean = check_consistency(repo)
        for i, n in enumerate(kill_points(total - args.margin, args.kills, args.seed), start=1):
            repo, graph = _fresh(args.workdir / f"killed_at_{n}", urls[i])
            killed = run_killed(n, lambda: _run(graph, repo))  # noqa: B023
            wait_for_orphans(repo)
            resumed = _resume(graph, repo)
            found = check_consistency(repo)
            complete = (found.datasets, found.files) == (clean.datasets, clean.files)
            cases.append({
                "point": n, "killed": killed == -9, "resume_exit": resumed,
                "consistent": found.ok and complete, "problems": found.problems[:5],
                "datasets": found.datasets, "files": found.files,
            })  # fmt: skip
    finally:
        if cleanup is not None:
            cleanup.close()
    report = {
        "points": total,
        "clean": {"datasets": clean.datasets, "files": clean.files, "ok": clean.ok},
        "kills": sum(c["killed"] for c in cases),
        "consistent": sum(c["consistent"] for c in cases),
        "seconds": round(time.monotonic() - t0, 1),
        "cases": cases,
    }
    json.dump(report, sys.stdout, indent=1)
    sys.stdout.write("\n")
    # A point the run never reached (it ended first) is no failure, but is reported.
    bad = [c for c in cases if not (c["resume_exit"] == 0 and c["consistent"])]
    return 1 if bad or not clean.ok else 0


if __name__ == "__main__":
    sys.exit(main())
