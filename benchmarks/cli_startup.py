"""CLI start-up benchmark: ``rc2 --help`` and a query on a small repository.

Usage::

    python benchmarks/cli_startup.py [--repo REPO] [--repeats 7]

Runs each command ``--repeats`` times as a fresh process (as a user types it) and reports
the median wall seconds and the median CPU seconds of the child process (user + system,
from ``getrusage(RUSAGE_CHILDREN)``), beside ``python -c pass`` (the interpreter's own
floor). The query is ``rc2 query-datasets REPO raw --where "detector = 0"`` on ``--repo``,
or on a ``tiny`` survey repository built first (simulate + bootstrap, not timed).

Targets (issue 15, on an idle 2-core machine): ``rc2 --help`` under 0.5 s of CPU, the query
under 1 s of wall time. Prints one JSON document with the machine's load average before
and after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RC2 = str(Path(sys.executable).parent / "rc2")


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(command: list[str], repeats: int) -> dict[str, Any]:
    """Median wall and child-CPU seconds of ``command`` over ``repeats`` fresh processes."""
    walls, cpus = [], []
    for _ in range(repeats):
        cpu0, wall0 = _child_cpu(), time.perf_counter()
        done = subprocess.run(command, capture_output=True, check=False)
        walls.append(time.perf_counter() - wall0)
        cpus.append(_child_cpu() - cpu0)
        if done.returncode != 0:
            raise SystemExit(
                f"{' '.join(command)} exited {done.returncode}: {done.stderr[-500:]!r}"
            )
    return {
        "command": " ".join(command),
        "wall_s_median": round(statistics.median(walls), 3),
        "wall_s_min": round(min(walls), 3),
        "cpu_s_median": round(statistics.median(cpus), 3),
        "cpu_s_min": round(min(cpus), 3),
    }


def _tiny_repo(work: Path) -> Path:
    from rc2_platform.ingest import bootstrap
    from rc2_platform.simulate import simulate

    result = simulate("tiny", work / "survey")
    bootstrap(result.bootstrap, work / "repo", progress=False)
    return work / "repo"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, help="a small repository (default: build tiny)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rc2-cli-bench-") as tmp:
        repo = args.repo or _tiny_repo(Path(tmp))
        load_before = os.getloadavg()
        floor = _time([sys.executable, "-c", "pass"], args.repeats)
        help_ = _time([RC2, "--help"], args.repeats)
        query_cmd = [RC2, "query-datasets", str(repo), "raw", "--where", "detector = 0"]
        query = _time(query_cmd, args.repeats)
        load_after = os.getloadavg()
    result = {
        "benchmark": "cli_startup",
        "repeats": args.repeats,
        "python_c_pass": floor,
        "rc2_help": help_,
        "query_datasets": query,
        "targets": {"rc2_help_cpu_s": 0.5, "query_wall_s": 1.0},
        "met": {
            "rc2_help_cpu": help_["cpu_s_median"] < 0.5,
            "query_wall": query["wall_s_median"] < 1.0,
        },
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
