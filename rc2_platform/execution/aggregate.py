"""Registration as its own step: register what finished jobs wrote (``rc2 aggregate``).

Workers write their outputs and one record per quantum (:mod:`.records`) and never touch
the registry. :func:`aggregate_run` reads the records files of a RUN's job folders and
registers the outputs of every succeeded quantum:

- **batched**: one registry transaction per ``batch_size`` datasets (default 50,000),
  dataset types resolved once, refs built column-wise;
- **idempotent**: output ids are deterministic and already registered datasets are
  skipped, so registering twice changes nothing;
- **restartable**: a checkpoint (``_runs/<run>/aggregated.json``: byte offset read per
  records file) is written after each committed batch; a run killed at any moment (even
  ``kill -9`` between a commit and its checkpoint) is repaired by running it again, and
  every dataset ends up registered exactly once;
- **usable while jobs run**: only complete lines are read; a later call picks up what
  finished since. Aggregators of one RUN take turns (an exclusive ``flock`` on
  ``_runs/<run>/aggregate.lock``).

The local runner calls it after each job, DAGMan's FINAL node runs ``rc2 aggregate REPO
RUN --finish``, the Dagster stages call it per cluster step and at the end; with
``provenance=True`` it also (re)writes the RUN's provenance dataset (:mod:`.provenance_table`).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rc2_platform.butler import Butler
from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import DatasetRef, DatasetType
from rc2_platform.datastore import DatastoreRecord
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.quantum_state import QuantumState
from rc2_platform.execution.records import iter_records_files, read_lines

__all__ = ["AggregateSummary", "aggregate_run"]

#: Checkpoint and lock files in the RUN's folder.
CHECKPOINT_FILE = "aggregated.json"
LOCK_FILE = "aggregate.lock"

_SUCCEEDED = QuantumState.SUCCEEDED.value


@dataclass
class AggregateSummary:
    """What one :func:`aggregate_run` call did.

    Attributes
    ----------
    run : str
        The RUN.
    files : int
        Records files with new lines.
    quanta : int
        New quantum records read.
    datasets : int
        Outputs of succeeded quanta found in them.
    registered : int
        Datasets newly registered (the rest were registered already).
    seconds, cpu_seconds : float
        Wall and CPU time of the call.
    provenance_rows : int or None
        Rows of the provenance dataset written (None: not written).
    """

    run: str
    files: int = 0
    quanta: int = 0
    datasets: int = 0
    registered: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    provenance_rows: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain data (``rc2 aggregate --json``)."""
        return dict(vars(self))


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _load_checkpoint(path: Path) -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in json.loads(path.read_text())["offsets"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _save_checkpoint(path: Path, offsets: dict[str, int]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps({"offsets": offsets}, separators=(",", ":")))
    os.replace(tmp, path)


class _RefBuilder:
    """Builds the (ref, record) pairs of succeeded quanta's outputs from record lines."""

    def __init__(self, butler: Butler, run: str) -> None:
        self.butler = butler
        self.run = run
        self._types: dict[str, DatasetType] = {}

    def dataset_type(self, name: str) -> DatasetType:
        dt = self._types.get(name)
        if dt is None:
            dt = self._types[name] = self.butler.registry.get_dataset_type(name)
        return dt

    def pairs(self, line: dict[str, Any]) -> list[tuple[DatasetRef, DatastoreRecord]]:
        outputs = {entry[1]: entry for entry in line.get("outputs") or ()}
        data_id: dict[str, Any] = line["data_id"]
        out = []
        for rid, path, formatter, storage_class, size in line.get("records") or ():
            entry = outputs.get(rid)
            if entry is None:
                continue  # a record of a file the quantum does not declare: not ours
            dt = self.dataset_type(entry[0])
            values = entry[2] if len(entry) > 2 else data_id
            coord = DataCoordinate(dt.dimensions, tuple(values[d] for d in dt.dimensions))
            dataset_id = uuid.UUID(rid)
            out.append(
                (
                    DatasetRef(dt, coord, self.run, dataset_id),
                    DatastoreRecord(dataset_id, path, formatter, storage_class, int(size)),
                )
            )
        return out


def aggregate_run(
    repo: str | Path,
    run: str,
    *,
    clusters: set[str] | None = None,
    provenance: bool = True,
    batch_size: int = 50_000,
    butler: Butler | None = None,
) -> AggregateSummary:
    """Register the outputs of every quantum the RUN's finished jobs recorded as succeeded.

    Parameters
    ----------
    repo : str or Path
        Repository root.
    run : str
        The RUN (its folder ``REPO/_runs/<run>/`` must exist).
    clusters : set of str, optional
        Only these clusters' job folders (a driver registering the job it just settled).
    provenance : bool
        Also (re)write the RUN's provenance dataset from every record.
    batch_size : int
        Datasets per registry transaction.
    butler : Butler, optional
        An open butler of ``repo`` to use (else one is opened and closed).

    Raises
    ------
    RunNotFoundError
        If ``run`` was never executed from ``repo``.
    """
    wall0, cpu0 = time.perf_counter(), time.process_time()
    journal = Journal.for_run(repo, run, must_exist=True)
    summary = AggregateSummary(run)
    own = butler is None
    butler = butler or Butler(repo)
    try:
        with _exclusive(journal.directory / LOCK_FILE):
            _register_new(butler, journal, clusters, batch_size, summary)
            if provenance:
                from rc2_platform.execution.provenance_table import write_provenance

                summary.provenance_rows = write_provenance(butler, journal)
    finally:
        if own:
            butler.close()
    summary.seconds = round(time.perf_counter() - wall0, 4)
    summary.cpu_seconds = round(time.process_time() - cpu0, 4)
    if summary.quanta or summary.provenance_rows is not None:
        journal.append("outputs_registered", **summary.to_json())
    return summary


def _register_new(
    butler: Butler,
    journal: Journal,
    clusters: set[str] | None,
    batch_size: int,
    summary: AggregateSummary,
) -> None:
    checkpoint_path = journal.directory / CHECKPOINT_FILE
    offsets = _load_checkpoint(checkpoint_path)
    builder = _RefBuilder(butler, summary.run)
    batch: list[tuple[DatasetRef, DatastoreRecord]] = []
    moved: dict[str, int] = {}

    def flush() -> None:
        if batch:
            summary.registered += butler.register_outputs(batch)
            batch.clear()
        if moved:
            offsets.update(moved)
            moved.clear()
            _save_checkpoint(checkpoint_path, offsets)

    for path in iter_records_files(journal.directory, clusters):
        key = str(path.relative_to(journal.directory))
        lines, end = read_lines(path, offsets.get(key, 0))
        if end == offsets.get(key, 0):
            continue
        summary.files += 1
        for line in lines:
            if line.get("kind") != "quantum":
                continue
            summary.quanta += 1
            if line.get("status") == _SUCCEEDED:
                pairs = builder.pairs(line)
                summary.datasets += len(pairs)
                batch.extend(pairs)
        moved[key] = end
        if len(batch) >= batch_size:
            flush()
    flush()
