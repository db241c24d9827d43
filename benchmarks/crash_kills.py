"""Kill tests at full length: SIGKILL bootstrap, raw ingest and ``rc2 run`` at many points.

Usage::

    python benchmarks/crash_kills.py --work /tmp/x/kills [--run-kills 20] [--pg-kills 5]

The default suite runs the bootstrap (20 kills on SQLite, 5 on PostgreSQL) and raw
ingest (24) kill tests, and 3 kills of ``rc2 run``; a kill of ``rc2 run`` costs two
orchestrators, each starting its fork server and jobs (~2.5 s idle), so the long run
variant lives here: ``rc2_platform_tests/hostile/run_kills.py`` with ``--run-kills`` on
SQLite and ``--pg-kills`` on PostgreSQL (``RC2_TEST_POSTGRES_URL``). Prints JSON: per
backend the crash points of a complete run, kills, repositories consistent after the
resume, seconds, and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def _harness(work: Path, kills: int, seed: int, postgres: str | None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "rc2_platform_tests.hostile.run_kills", str(work),
           "--kills", str(kills), "--seed", str(seed)]  # fmt: skip
    if postgres:
        cmd += ["--postgres", postgres]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    report: dict[str, Any] = json.loads(proc.stdout)
    report["exit"] = proc.returncode
    report["failures"] = [c for c in report.pop("cases") if not c["consistent"]]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--run-kills", type=int, default=20)
    parser.add_argument("--pg-kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    pg = os.environ.get("RC2_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
    out: dict[str, Any] = {"load_before": os.getloadavg()}
    out["run_sqlite"] = _harness(args.work / "sqlite", args.run_kills, args.seed, None)
    if args.pg_kills:
        out["run_postgresql"] = _harness(args.work / "pg", args.pg_kills, args.seed, pg)
    out["load_after"] = os.getloadavg()
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
