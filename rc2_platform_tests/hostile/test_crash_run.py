"""SIGKILL ``rc2 run``'s orchestrator at crash points; ``--resume`` completes the RUN exactly.

The harness (:mod:`rc2_platform_tests.hostile.run_kills`) runs in its own process (see
there why), kills the orchestrator at seeded crash points among those a complete run
passes (journal events, registrations, init-output writes), waits for the jobs it left
running, resumes, and checks that registry and disk agree exactly and hold what a clean
run holds. Three kills keep this in the default suite (~10 s on an idle machine);
``benchmarks/crash_kills.py`` runs 20 on SQLite and 5 on PostgreSQL (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rc2_platform_tests.hostile.crash_support import KILLS


def test_crash_run_killed_at_three_points_resumes_to_a_consistent_repository(
    tmp_path: Path,
) -> None:
    # Points among the first (points - 16): how many registrations a run makes depends on
    # how jobs finish between polls (25 to 36 points seen under load), and a point the
    # run never reaches is no kill.
    proc = subprocess.run(
        [sys.executable, "-m", "rc2_platform_tests.hostile.run_kills", str(tmp_path),
         "--kills", "3", "--seed", "5", "--margin", "16"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    report = json.loads(proc.stdout)
    for case in report["cases"]:
        if case["killed"]:
            KILLS["consistent" if case["consistent"] else "inconsistent"] += 1
    assert proc.returncode == 0, json.dumps(report["cases"], indent=1) + proc.stderr[-2000:]
    assert report["kills"] == 3 and report["consistent"] == 3
    assert all(c["killed"] and c["resume_exit"] == 0 for c in report["cases"])
