"""Deterministic kill points for crash tests (``RC2_KILL_AT``).

Code that writes files or registry rows calls :func:`crash_point` at the moments where a
``kill -9`` is interesting: after a file is placed but before its registry row commits,
between the steps of a bootstrap, after a job's outputs are written but before they are
registered. Unarmed, a point costs a counter increment and one environment lookup.

``RC2_KILL_AT=N`` (or :func:`arm`) makes the process SIGKILL itself at the N-th point it
passes (counted from 1, over every label); ``RC2_KILL_AT=LABEL:N`` at the N-th pass of one label. The
variable is read when this module is imported and removed from the environment, so
``RC2_KILL_AT=5 rc2 run ...`` kills the orchestrator, not the jobs it starts. Just
before dying it writes one line ``rc2: killed at crash point N (LABEL)`` to stderr. Tests
count the points of a complete run with :func:`passed` (or ``RC2_KILL_COUNT=FILE``, which
appends one label per line) and pick kill points among them, so no timing is involved.
"""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["arm", "crash_point", "passed", "reset"]

_ENV = "RC2_KILL_AT"
_COUNT_ENV = "RC2_KILL_COUNT"

_counts: dict[str, int] = {}
_total = 0
# Read once and removed from the environment: the processes this one starts (jobs, pools)
# are not killed too. A forked child keeps the armed spec (and counts its own points).
_armed: str | None = os.environ.pop(_ENV, None) or None


def arm(spec: str | int | None) -> None:
    """Kill this process at ``spec`` (as ``RC2_KILL_AT``), without the environment.

    Used by tests that fork the process to kill; ``None`` disarms.
    """
    global _armed
    _armed = None if spec is None else str(spec)


def reset() -> None:
    """Forget the points passed so far (tests call it before a counted run)."""
    global _total
    _counts.clear()
    _total = 0


def passed() -> int:
    """How many crash points this process passed since start (or :func:`reset`)."""
    return _total


def crash_point(label: str) -> None:
    """Count one pass of the point ``label``; die by SIGKILL if ``RC2_KILL_AT`` says so."""
    global _total
    _total += 1
    _counts[label] = n = _counts.get(label, 0) + 1
    log = os.environ.get(_COUNT_ENV)
    if log:
        with open(log, "a") as fh:
            fh.write(label + "\n")
    spec = _armed
    if not spec:
        return
    want_label, _, number = spec.rpartition(":")
    try:
        target = int(number)
    except ValueError:
        return
    hit = (n == target) if want_label else (_total == target)
    if want_label and want_label != label:
        hit = False
    if hit:
        sys.stderr.write(f"rc2: killed at crash point {target} ({label})\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
