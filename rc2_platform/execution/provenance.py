"""What the executor records about each quantum: timings, memory, software, host, log.

The record is stored in the quantum's ``{label}_metadata`` dataset under the key
``quantum`` (next to what the task itself put in ``task.metadata``), and the quantum's
log lines under ``log``. The log is therefore kept *in the metadata dataset*, not as a
separate file.
"""

from __future__ import annotations

import functools
import logging
import platform
import resource
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "LogCapture",
    "QuantumTimer",
    "host_info",
    "peak_rss_mb",
    "software_versions",
]


@functools.cache
def software_versions() -> dict[str, str]:
    """Versions of rc2_platform, numpy, astropy and Python (computed once per process)."""
    import astropy
    import numpy

    import rc2_platform

    return {
        "rc2_platform": str(rc2_platform.__version__),
        "numpy": str(numpy.__version__),
        "astropy": str(astropy.__version__),
        "python": platform.python_version(),
    }


@functools.cache
def host_info() -> dict[str, str]:
    """Host name and platform of this worker (computed once per process)."""
    return {"hostname": socket.gethostname(), "platform": sys.platform}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (``getrusage`` ``ru_maxrss``)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


@dataclass
class QuantumTimer:
    """Wall and CPU time of one quantum, and of the part spent inside the task."""

    start: float = field(default_factory=time.time)
    cpu_start: float = field(default_factory=time.process_time)
    end: float = 0.0
    cpu_seconds: float = 0.0
    run_seconds: float = 0.0

    def stop(self) -> None:
        """Record the end time and the CPU time used since the start."""
        self.end = time.time()
        self.cpu_seconds = time.process_time() - self.cpu_start

    def as_dict(self) -> dict[str, float]:
        """Timings as plain data (Unix seconds and durations)."""
        return {
            "start": self.start,
            "end": self.end,
            "wall_seconds": self.end - self.start,
            "cpu_seconds": self.cpu_seconds,
            "run_seconds": self.run_seconds,
        }


class LogCapture(logging.Handler):
    """Collect the log records emitted while one quantum runs (INFO and above by default).

    Use as a context manager: the handler is attached to the root logger on entry and
    removed on exit; :attr:`lines` holds the formatted records.
    """

    def __init__(self, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._old_level: int | None = None

    def emit(self, record: logging.LogRecord) -> None:  # noqa: D102 - logging.Handler API
        try:
            self.lines.append(self.format(record))
        except Exception:  # pragma: no cover - a broken record must not fail the quantum
            self.handleError(record)

    def __enter__(self) -> LogCapture:
        root = logging.getLogger()
        self._old_level = root.level
        if root.level == logging.NOTSET or root.level > self.level:
            root.setLevel(self.level)
        root.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        if self._old_level is not None:
            root.setLevel(self._old_level)


def quantum_record(
    *,
    task_label: str,
    data_id: dict[str, Any],
    timer: QuantumTimer,
    inputs_read: list[str],
) -> dict[str, Any]:
    """Assemble the executor's provenance record stored under ``quantum`` in the metadata."""
    return {
        "task": task_label,
        "data_id": data_id,
        **timer.as_dict(),
        "peak_rss_mb": peak_rss_mb(),
        "software": software_versions(),
        "host": host_info(),
        "inputs_read": inputs_read,
    }
