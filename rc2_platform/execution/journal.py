"""Run state on disk: an append-only JSON-lines journal plus per-job folders.

Layout under a repository (``REPO/_runs/<safe run name>/``)::

    journal.jsonl                 one JSON object per line, appended, never rewritten
    input_records.json            datastore records of the graph's overall inputs
    jobs/<cluster>/attempt<N>/    quanta.jsonl (records), outputs.json (a finished job's outputs),
                                  job.qgraph, <cluster>.out/.err (+ backend files)

Every event has ``event`` (its kind) and ``time`` (Unix seconds). Writers append whole
lines with one ``write`` call under ``O_APPEND``, so a crash leaves at most a truncated last
line, which readers skip. ``rc2 report`` and ``rc2 restart`` read only this folder (and
the job result files it names), so they work after the orchestrator is gone.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rc2_platform.butler import RUNS_DIR, run_state_directory, safe_run_name
from rc2_platform.core.crash_points import crash_point
from rc2_platform.errors import RunNotFoundError

__all__ = ["RUNS_DIR", "Journal", "run_directory", "safe_run_name"]


def run_directory(repo: str | Path, run: str) -> Path:
    """Return ``REPO/_runs/<safe run name>`` (not created; removed with the RUN)."""
    return run_state_directory(repo, run)


class Journal:
    """The append-only event log of one RUN's execution.

    Parameters
    ----------
    directory : Path
        The run's folder (see :func:`run_directory`); created by the first write.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "journal.jsonl"
        self._scan_offset = 0
        self._cancel_state = False

    @classmethod
    def for_run(cls, repo: str | Path, run: str, *, must_exist: bool = False) -> Journal:
        """Open the journal of ``run`` in ``repo``.

        Raises
        ------
        RunNotFoundError
            With ``must_exist``, when the run was never executed from this repository.
        """
        directory = run_directory(repo, run)
        if must_exist and not (directory / "journal.jsonl").exists():
            raise RunNotFoundError(
                f"no execution journal for RUN {run!r} in repository {repo} "
                f"(looked for {directory / 'journal.jsonl'}); start it with `rc2 run`"
            )
        return cls(directory)

    def job_dir(self, cluster: str, attempt: int) -> Path:
        """Folder of one attempt of one cluster job (created)."""
        path = self.directory / "jobs" / cluster / f"attempt{attempt}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def input_records_path(self) -> Path:
        """Where the orchestrator writes the overall inputs' datastore records."""
        return self.directory / "input_records.json"

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event (with the current time) and return it."""
        record = {"event": event, "time": time.time(), **fields}
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            # A short write (full disk) may have left a line without its end: start a new
            # one, so this event is not glued to the torn one and lost with it.
            torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
            os.write(fd, (b"\n" if torn else b"") + line.encode())
        finally:
            os.close(fd)
        crash_point(f"journal.{event}")
        return record

    def events(self, kind: str | None = None) -> Iterator[dict[str, Any]]:
        """Iterate over the events (of one ``kind``, if given), oldest first."""
        if not self.path.exists():
            return
        with self.path.open("rb") as stream:  # bytes: a damaged line may not be UTF-8
            for line in stream:
                try:
                    record = json.loads(line)
                except ValueError:  # also UnicodeDecodeError
                    continue  # a truncated last line of a crashed writer, a damaged line
                if not isinstance(record, dict):
                    continue
                if kind is None or record.get("event") == kind:
                    yield record

    def last(self, kind: str) -> dict[str, Any] | None:
        """The latest event of one kind, or None."""
        found = None
        for record in self.events(kind):
            found = record
        return found

    def cancel_requested(self) -> bool:
        """Whether ``rc2 cancel`` asked this run to stop after it last started.

        Called at every orchestrator poll: reads only the lines appended since the last
        call (the journal only grows) and parses only those naming the two events.
        """
        if not self.path.exists():
            return self._cancel_state
        with self.path.open("rb") as stream:
            stream.seek(self._scan_offset)
            chunk = stream.read()
        end = chunk.rfind(b"\n") + 1  # complete lines only
        for line in chunk[:end].splitlines():
            if b"cancel_requested" not in line and b"run_started" not in line:
                continue
            try:
                kind = json.loads(line).get("event")
            except ValueError:
                continue
            if kind == "cancel_requested":
                self._cancel_state = True
            elif kind == "run_started":
                self._cancel_state = False
        self._scan_offset += end
        return self._cancel_state
