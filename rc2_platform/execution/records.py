"""A job's per-quantum records: the file a worker writes as its quanta finish.

Every job attempt appends to one JSON-lines file in its folder
(``REPO/_runs/<run>/jobs/<cluster>/attempt<N>/quanta.jsonl``), one ``os.write`` of a
whole line at a time under ``O_APPEND``:

``{"kind": "job", ...}``
    when the job starts: cluster, attempt, host, pid, batch job id, processes, start;
``{"kind": "quantum", ...}``
    when a quantum ends (:meth:`QuantumOutcome.to_json`): index, task, data ID, state,
    error type/message/traceback, timing, peak memory, its input dataset ids by dataset
    type, its output dataset ids, and the datastore records of the files it wrote;
``{"kind": "end", ...}``
    when the job ends.

At its end a job also writes ``outputs.json`` beside it: its outputs as columns per
dataset type, which the registration reads instead of these lines
(:mod:`.outputs_manifest`).

A job written again into the same folder (a batch system's retry of the same attempt)
appends a new ``job`` line; the latest record of each quantum wins. A job that dies
keeps the records of the quanta that finished before (their outputs are complete: files
are renamed into place before the line is written), so they need not run again. A crash
leaves at most a truncated last line, which readers skip.

Workers never touch the registry: :mod:`~rc2_platform.execution.aggregate` registers
what these files name.
"""

from __future__ import annotations

import os
import resource
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from rc2_platform.errors import ClusterJobError
from rc2_platform.execution.executor import QuantumOutcome
from rc2_platform.execution.outputs_manifest import write_manifest

__all__ = [
    "RECORDS_FILE",
    "JobResult",
    "RecordsWriter",
    "batch_job_id",
    "iter_records_files",
    "read_lines",
]

#: Name of the records file in a job attempt's folder.
RECORDS_FILE = "quanta.jsonl"


def batch_job_id() -> str | None:
    """The batch system's id of this job, when it says (HTCondor job ad, Kubernetes pod)."""
    ad = os.environ.get("_CONDOR_JOB_AD")
    if ad:
        try:
            values = dict(
                line.split(" = ", 1) for line in Path(ad).read_text().splitlines() if " = " in line
            )
            return f"{values['ClusterId'].strip()}.{values['ProcId'].strip()}"
        except (OSError, KeyError):
            pass
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return os.environ.get("HOSTNAME")
    return os.environ.get("RC2_JOB_ID")


class RecordsWriter:
    """Appends the records of one job attempt (see the module docstring).

    Parameters
    ----------
    path : Path
        The records file (created with its folder if missing).
    output_dimensions : mapping, optional
        Dimensions of the job's output dataset types, by name: when given, the job's end
        also writes its outputs manifest (:mod:`.outputs_manifest`) for the registration.
    """

    def __init__(
        self, path: str | Path, output_dimensions: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._output_dimensions = output_dimensions
        self._start = os.fstat(self._fd).st_size
        self._outcomes: list[QuantumOutcome] = []

    def _write(self, record: dict[str, Any]) -> None:
        os.write(self._fd, orjson.dumps(record) + b"\n")

    def job_started(self, cluster: str, attempt: int, processes: int, start: float) -> None:
        """Write the ``job`` line."""
        self._write(
            {
                "kind": "job",
                "cluster": cluster,
                "attempt": attempt,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "job_id": batch_job_id(),
                "processes": processes,
                "start": start,
            }
        )

    def quantum(self, outcome: QuantumOutcome) -> None:
        """Write one quantum's record."""
        self._write({"kind": "quantum", **outcome.to_json()})
        if self._output_dimensions is not None:
            self._outcomes.append(outcome)

    def job_ended(self, end: float, counts: dict[str, int]) -> None:
        """Write the ``end`` line (with the job process's CPU seconds, its children's too)."""
        usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        cpu = sum(u.ru_utime + u.ru_stime for u in usage)
        self._write({"kind": "end", "end": end, "counts": counts, "cpu_seconds": cpu})
        if self._output_dimensions is not None:
            end_offset = os.fstat(self._fd).st_size
            write_manifest(
                self.path.parent, self._outcomes, self._output_dimensions, self._start, end_offset
            )

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)

    def __enter__(self) -> RecordsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_lines(path: str | Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The complete JSON lines of a records file from byte ``offset``, and the new offset.

    A truncated last line (a writer that died mid-write, or one still writing) is left
    for the next read; lines that are not JSON are skipped.
    """
    with open(path, "rb") as stream:
        stream.seek(offset)
        chunk = stream.read()
    end = chunk.rfind(b"\n") + 1
    if end:  # all lines as one JSON array: one parser call (~15 % less CPU than per line)
        try:
            whole = orjson.loads(b"[" + chunk[: end - 1].replace(b"\n", b",") + b"]")
        except orjson.JSONDecodeError:
            whole = None
        if isinstance(whole, list) and len(whole) == chunk.count(b"\n", 0, end):
            return whole, offset + end
    lines = []
    for line in chunk[:end].splitlines():
        try:
            lines.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return lines, offset + end


@dataclass
class JobResult:
    """What one job attempt's records say (the latest record of each quantum).

    Attributes
    ----------
    cluster, attempt : str, int
        The job.
    start, end : float
        Unix times of its (latest) start and end; ``end`` is the last record's end when
        the job did not finish (``complete`` False).
    host : str
        Where it (last) ran.
    processes : int
        Processes it used.
    outcomes : list of QuantumOutcome
        The latest record of each quantum, in record order.
    complete : bool
        Its last start has an ``end`` line (False: the job died or still runs).
    job_id : str or None
        The batch system's id, when the worker knew it.
    pid : int
        The worker's process id.
    cpu_seconds : float or None
        CPU time of the whole job process (and its children), when it ended.
    """

    cluster: str
    attempt: int
    start: float
    end: float
    host: str
    processes: int
    outcomes: list[QuantumOutcome] = field(default_factory=list)
    complete: bool = True
    job_id: str | None = None
    pid: int = 0
    cpu_seconds: float | None = None

    def counts(self) -> dict[str, int]:
        """Number of quanta per state."""
        out: dict[str, int] = {}
        for o in self.outcomes:
            out[o.status.value] = out.get(o.status.value, 0) + 1
        return out

    def write(self, path: str | Path) -> None:
        """Write these records as one job's records file (appending)."""
        with RecordsWriter(path) as writer:
            writer.job_started(self.cluster, self.attempt, self.processes, self.start)
            for outcome in self.outcomes:
                writer.quantum(outcome)
            writer.job_ended(self.end, self.counts())

    @classmethod
    def read(cls, path: str | Path) -> JobResult:
        """Read a job's records file.

        Raises
        ------
        ClusterJobError
            If the file cannot be read or holds no ``job`` line.
        """
        try:
            lines, _ = read_lines(path)
            return cls.from_lines(lines, path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ClusterJobError(f"cannot read job records file {path}: {exc}") from None

    @classmethod
    def from_lines(cls, lines: list[dict[str, Any]], path: str | Path = "") -> JobResult:
        """Fold parsed record lines (see :func:`read_lines`) into a result."""
        header: dict[str, Any] | None = None
        latest: dict[int, QuantumOutcome] = {}
        end: float | None = None
        cpu: float | None = None
        for line in lines:
            kind = line.get("kind")
            if kind == "job":
                header, end, cpu = line, None, None
            elif kind == "quantum":
                outcome = QuantumOutcome.from_json(line)
                latest.pop(outcome.index, None)
                latest[outcome.index] = outcome
            elif kind == "end":
                end = float(line["end"])
                cpu = line.get("cpu_seconds")
        if header is None:
            raise ClusterJobError(f"job records file {path} has no job line")
        outcomes = list(latest.values())
        last = max((o.timing.get("end", 0.0) for o in outcomes), default=header["start"])
        return cls(
            cluster=str(header["cluster"]),
            attempt=int(header["attempt"]),
            start=float(header["start"]),
            end=end if end is not None else float(last),
            host=str(header["host"]),
            processes=int(header["processes"]),
            outcomes=outcomes,
            complete=end is not None,
            job_id=header.get("job_id"),
            pid=int(header.get("pid") or 0),
            cpu_seconds=cpu,
        )


def iter_records_files(run_dir: Path, clusters: set[str] | None = None) -> Iterator[Path]:
    """Every job attempt's records file under a RUN's folder (of ``clusters`` if given)."""
    jobs = run_dir / "jobs"
    if not jobs.is_dir():
        return
    # Given clusters: their folders only (not a listing of every job of the RUN).
    names = sorted(clusters) if clusters is not None else sorted(p.name for p in jobs.iterdir())
    for name in names:
        cluster = jobs / name
        try:
            attempts = sorted(e.name for e in os.scandir(cluster) if e.name.startswith("attempt"))
        except OSError:  # no such cluster folder (yet)
            continue
        for attempt in attempts:
            path = cluster / attempt / RECORDS_FILE
            if path.is_file():
                yield path
