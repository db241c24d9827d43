"""A RUN's provenance: one row per quantum attempt, stored in the RUN as a Parquet dataset.

The dataset ``run_provenance`` (no dimensions, storage class ``ArrowTable``) of a RUN
holds, per quantum attempt: task label, quantum index and data ID, state, attempt (and
the try within it when a batch system re-ran the same attempt), cluster, batch job id,
host and pid, exception type and the first lines of its message, start and end time,
wall and CPU seconds, peak memory, and the input and output dataset ids (with their
dataset types). Rows come from the workers' records (:mod:`.records`) plus what only
the orchestrating side knows, from the journal: quanta of a job that died before
recording them (``JobDied``) and quanta it never ran because an upstream quantum failed
(``blocked``, attempt 0). Run-level facts (graph, tasks and their quantum counts, final
status) are in the table's schema metadata, so ``rc2 report`` and ``rc2 provenance``
work from the dataset alone once the job folders are gone.

:func:`write_provenance` (called by :func:`~.aggregate.aggregate_run`) rebuilds and
rewrites it; :func:`load_provenance` reads the freshest view (the records on disk, plus
the dataset's rows of attempts whose folders were deleted).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from rc2_platform.butler import Butler
from rc2_platform.core import (
    DataCoordinate,
    DatasetIdGenMode,
    DatasetRef,
    DatasetType,
    make_dataset_id,
)
from rc2_platform.errors import DatasetNotFoundError, MissingDatasetTypeError, RunNotFoundError
from rc2_platform.execution.journal import Journal, run_directory
from rc2_platform.execution.quantum_state import QuantumState
from rc2_platform.execution.records import iter_records_files, read_lines

__all__ = [
    "PROVENANCE_DATASET_TYPE",
    "SCHEMA",
    "load_provenance",
    "provenance_ref",
    "provenance_rows",
    "write_provenance",
]

#: The per-RUN provenance dataset type.
PROVENANCE_DATASET_TYPE = DatasetType("run_provenance", (), "ArrowTable")

#: Lines of an error message kept in the table.
MESSAGE_LINES = 5
MESSAGE_CHARS = 1000

_TIME = pa.timestamp("us", tz="UTC")
_IDS = pa.list_(pa.string())

#: Columns of the provenance table.
SCHEMA = pa.schema(
    [
        ("run", pa.string()),
        ("quantum", pa.int32()),
        ("task", pa.string()),
        ("data_id", pa.string()),
        ("state", pa.string()),
        ("attempt", pa.int32()),
        ("try", pa.int32()),
        ("cluster", pa.string()),
        ("job_id", pa.string()),
        ("host", pa.string()),
        ("pid", pa.int64()),
        ("exception_type", pa.string()),
        ("message", pa.string()),
        ("start", _TIME),
        ("end", _TIME),
        ("wall_seconds", pa.float64()),
        ("cpu_seconds", pa.float64()),
        ("peak_memory_mb", pa.float64()),
        ("input_types", _IDS),
        ("input_ids", _IDS),
        ("output_types", _IDS),
        ("output_ids", _IDS),
    ]
)


def _time(seconds: float | None) -> datetime | None:
    return None if not seconds else datetime.fromtimestamp(seconds, UTC)


def _message(text: str | None) -> str | None:
    if not text:
        return None
    return "\n".join(text.splitlines()[:MESSAGE_LINES])[:MESSAGE_CHARS]


def _without_type(text: str | None, error_type: str | None) -> str | None:
    """The message without the ``Type: `` prefix the worker put in front of it."""
    prefix = f"{error_type}: "
    return text[len(prefix) :] if text and error_type and text.startswith(prefix) else text


def _data_id_json(data_id: Any) -> str:
    return json.dumps(dict(data_id), sort_keys=True, separators=(",", ":"), default=str)


def _row(line: dict[str, Any], header: dict[str, Any], tries: int, run: str) -> dict[str, Any]:
    timing = line.get("timing") or {}
    inputs = line.get("inputs") or {}
    outputs = line.get("outputs") or []
    return {
        "run": run,
        "quantum": int(line["index"]),
        "task": line["task"],
        "data_id": _data_id_json(line["data_id"]),
        "state": line["status"],
        "attempt": int(header["attempt"]),
        "try": tries,
        "cluster": header["cluster"],
        "job_id": header.get("job_id"),
        "host": header.get("host"),
        "pid": header.get("pid"),
        "exception_type": line.get("error_type"),
        "message": _message(_without_type(line.get("error"), line.get("error_type"))),
        "start": _time(timing.get("start")),
        "end": _time(timing.get("end")),
        "wall_seconds": timing.get("wall_seconds"),
        "cpu_seconds": timing.get("cpu_seconds"),
        "peak_memory_mb": line.get("peak_rss_mb"),
        "input_types": [t for t, ids in inputs.items() for _ in ids],
        "input_ids": [i for ids in inputs.values() for i in ids],
        "output_types": [o[0] for o in outputs],
        "output_ids": [o[1] for o in outputs],
    }


def _orchestrator_row(
    run: str, index: int, task: str, data_id: Any, state: QuantumState, **fields: Any
) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(SCHEMA.names)
    row.update(
        run=run,
        quantum=index,
        task=task,
        data_id=_data_id_json(data_id),
        state=state.value,
        attempt=0,
        input_types=[],
        input_ids=[],
        output_types=[],
        output_ids=[],
    )
    row.update(fields)
    return row


def provenance_rows(journal: Journal, run: str) -> list[dict[str, Any]]:
    """Every quantum attempt of the RUN, from its records files and its journal."""
    rows: list[dict[str, Any]] = []
    recorded: dict[tuple[str, int], set[int]] = defaultdict(set)
    for path in iter_records_files(journal.directory):
        lines, _ = read_lines(path)
        header: dict[str, Any] | None = None
        tries = 0
        for line in lines:
            kind = line.get("kind")
            if kind == "job":
                header, tries = line, tries + 1
            elif kind == "quantum" and header is not None:
                rows.append(_row(line, header, tries, run))
                recorded[(header["cluster"], int(header["attempt"]))].add(int(line["index"]))
    rows += _journal_rows(journal, run, recorded)
    return rows


def _journal_rows(
    journal: Journal, run: str, recorded: dict[tuple[str, int], set[int]]
) -> list[dict[str, Any]]:
    """Rows only the journal knows: quanta of died jobs, quanta blocked before any job."""
    submitted: dict[tuple[str, int], dict[str, Any]] = {}
    names: dict[int, tuple[str, Any]] = {}
    rows = []
    for ev in journal.events():
        kind = ev["event"]
        if kind == "job_submitted":
            submitted[(ev["cluster"], int(ev["attempt"]))] = ev
            names.update({int(i): (t, d) for i, t, d in ev["quanta"]})
        elif kind == "job_finished" and not ev.get("cancelled"):
            key = (ev["cluster"], int(ev["attempt"]))
            sub = submitted.get(key)
            missing = set(ev.get("unrecorded") or ())
            if sub is None or not (ev.get("died") or missing):
                continue
            status = ev.get("status") or {}
            reason = status.get("reason") or f"exit code {status.get('exit_code')}"
            for i, task, data_id in sub["quanta"]:
                if int(i) not in recorded[key] and (ev.get("died") or int(i) in missing):
                    rows.append(
                        _orchestrator_row(
                            run, int(i), task, data_id, QuantumState.FAILED,
                            attempt=key[1], cluster=key[0],
                            job_id=(sub.get("handle") or {}).get("id"),
                            exception_type="JobDied",
                            message=f"job died before recording this quantum ({reason})",
                            start=_time(sub["time"]), end=_time(ev["time"]),
                        )
                    )  # fmt: skip
        elif kind == "quanta_blocked":
            for i, task, data_id, cause in ev["quanta"]:
                names[int(i)] = (task, data_id)
                by_task, by_id = names.get(int(cause), ("?", {}))
                rows.append(
                    _orchestrator_row(
                        run, int(i), task, data_id, QuantumState.BLOCKED,
                        message=f"upstream quantum {by_task} {by_id} (#{cause}) failed or is "
                        "blocked",
                    )
                )  # fmt: skip
    return rows


def _metadata(journal: Journal) -> dict[bytes, bytes]:
    started = journal.last("run_started") or {}
    finished = journal.last("run_finished") or {}
    meta = {
        "graph": started.get("graph"),
        "tasks": started.get("tasks"),
        "n_quanta": started.get("n_quanta"),
        "status": finished.get("status"),
        "first_start": next((e["time"] for e in journal.events("run_started")), None),
        "last_event": finished.get("time"),
    }
    return {b"rc2_provenance": json.dumps(meta).encode()}


def to_table(
    rows: Iterable[dict[str, Any]], metadata: dict[bytes, bytes] | None = None
) -> pa.Table:
    """The provenance table of ``rows`` (dicts with the :data:`SCHEMA` columns)."""
    table = pa.Table.from_pylist(list(rows), schema=SCHEMA)
    return table.replace_schema_metadata(metadata) if metadata else table


def provenance_ref(run: str) -> DatasetRef:
    """The ref of a RUN's provenance dataset (deterministic id)."""
    empty = DataCoordinate((), ())
    dt = PROVENANCE_DATASET_TYPE
    return DatasetRef(
        dt, empty, run, make_dataset_id(dt, empty, run, DatasetIdGenMode.DATAID_TYPE_RUN)
    )


def write_provenance(butler: Butler, journal: Journal) -> int:
    """Rebuild the RUN's provenance table from disk and store it as its dataset.

    The file is rewritten in place (atomically); the dataset is registered the first
    time. Returns the number of rows.
    """
    started = journal.last("run_started")
    if started is None:
        return 0
    run = str(started["run"])
    table = to_table(provenance_rows(journal, run), _metadata(journal))
    ref = provenance_ref(run)
    butler.register_dataset_type(PROVENANCE_DATASET_TYPE)
    record = butler.datastore.put(table, ref, overwrite=True)
    butler.register_outputs([(ref, record)])
    return table.num_rows


def read_provenance_dataset(butler: Butler, run: str) -> pa.Table | None:
    """The stored provenance dataset of ``run``, or None if it has none."""
    ref = provenance_ref(run)
    try:
        record = butler.datastore_records([ref]).get(ref.id)
    except MissingDatasetTypeError:
        return None
    if record is None:
        return None
    table: pa.Table = butler.datastore.get(ref, record)
    return table


def load_provenance(repo: str | Path, run: str) -> pa.Table:
    """The freshest provenance of ``run``: records on disk, plus stored rows of attempts
    whose job folders are gone. Its schema metadata holds the run-level facts.

    Raises
    ------
    RunNotFoundError
        If ``run`` has neither a journal nor a provenance dataset in ``repo``.
    """
    directory = run_directory(repo, run)
    stored: pa.Table | None
    with Butler(repo) as butler:
        try:
            stored = read_provenance_dataset(butler, run)
        except DatasetNotFoundError:
            stored = None
    if not (directory / "journal.jsonl").exists():
        if stored is None:
            raise RunNotFoundError(
                f"RUN {run!r} has no execution journal ({directory}) and no run_provenance "
                f"dataset in repository {repo}; was it executed here? `rc2 collections list "
                f"REPO` shows the RUNs"
            )
        return stored
    journal = Journal(directory)
    rows = provenance_rows(journal, run)
    if stored is not None:
        present = {(r["cluster"], r["attempt"]) for r in rows}
        jobs = directory / "jobs"
        rows += [
            r
            for r in stored.to_pylist()
            if r["attempt"]
            and (r["cluster"], r["attempt"]) not in present
            and not (jobs / str(r["cluster"]) / f"attempt{r['attempt']}").exists()
        ]
    return to_table(rows, _metadata(journal))
