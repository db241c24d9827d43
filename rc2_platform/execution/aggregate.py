"""Registration as its own step: register what finished jobs wrote (``rc2 aggregate``).

Workers write their outputs and one record per quantum (:mod:`.records`) and never touch
the registry. :func:`aggregate_run` reads the records files of a RUN's job folders and
registers the outputs of every succeeded quantum:

- **batched and columnar**: one registry transaction per ``batch_size`` datasets
  (default 100,000: a tract's ~52,000 outputs in one); the records' ids, data-ID values and file records go to
  :meth:`Butler.register_output_columns` as columns per dataset type, with no ref,
  data-ID or UUID object built per dataset;
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
import gc
import itertools
import json
import operator
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rc2_platform.butler import Butler, DatasetColumns
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.outputs_manifest import TypeColumns, read_manifest
from rc2_platform.execution.quantum_state import QuantumState
from rc2_platform.execution.records import iter_records_files, read_lines

__all__ = ["AggregateSummary", "aggregate_run"]

#: Checkpoint and lock files in the RUN's folder.
CHECKPOINT_FILE = "aggregated.json"
#: Datasets per registry transaction: a tract's outputs (~52,000) in one.
DEFAULT_BATCH_SIZE = 100_000
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
    manifests : int
        Of which read through their job's outputs manifest (:mod:`.outputs_manifest`).
    quanta : int
        New quantum records read.
    datasets : int
        Outputs of succeeded quanta found in them.
    registered : int
        Datasets newly registered (the rest were registered already).
    seconds, cpu_seconds : float
        Wall and CPU time of the call.
    read_seconds, read_cpu_seconds : float
        Of which reading the records files and gathering their outputs in columns.
    write_seconds, write_cpu_seconds : float
        Of which the registry transactions (inserts, data-ID checks, commits).
    provenance_rows : int or None
        Rows of the provenance dataset written (None: not written).
    """

    run: str
    files: int = 0
    manifests: int = 0
    quanta: int = 0
    datasets: int = 0
    registered: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    read_seconds: float = 0.0
    read_cpu_seconds: float = 0.0
    write_seconds: float = 0.0
    write_cpu_seconds: float = 0.0
    provenance_rows: int | None = None

    def timed(self, phase: str) -> _PhaseTimer:
        """A block adding its wall and CPU time to ``<phase>_seconds`` / ``_cpu_seconds``."""
        return _PhaseTimer(self, phase)

    def to_json(self) -> dict[str, Any]:
        """Plain data (``rc2 aggregate --json``)."""
        return dict(vars(self))


class _PhaseTimer:
    """Adds a block's wall and thread CPU time to a summary's phase fields."""

    def __init__(self, summary: AggregateSummary, phase: str) -> None:
        self.summary, self.phase = summary, phase

    def __enter__(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.thread_time()

    def __exit__(self, *exc: object) -> None:
        s, p = self.summary, self.phase
        setattr(s, f"{p}_seconds", getattr(s, f"{p}_seconds") + time.perf_counter() - self._wall)
        cpu = getattr(s, f"{p}_cpu_seconds") + time.thread_time() - self._cpu
        setattr(s, f"{p}_cpu_seconds", cpu)


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while record lines pile up.

    Parsing ~20,000 lines builds hundreds of thousands of lists and dicts; each
    collection generation would rescan all of them (none form cycles).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _load_checkpoint(path: Path) -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in json.loads(path.read_text())["offsets"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _save_checkpoint(path: Path, offsets: dict[str, int]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps({"offsets": offsets}, separators=(",", ":")))
    os.replace(tmp, path)


def _one_value(dim: str) -> Callable[[dict[str, Any]], tuple[Any]]:
    return lambda values: (values[dim],)


class _Columns:
    """The outputs of succeeded quanta, gathered per dataset type.

    From record lines (:meth:`add`): a line's ``records`` entry ``[id, path, formatter,
    storage class, size]`` is kept as parsed, with its data-ID value tuple. From outputs
    manifests (:meth:`add_columns`): their columns, as read. :meth:`take` joins both, in
    the order they came, into :class:`DatasetColumns` (no ref, data ID or UUID object per
    dataset).
    """

    def __init__(self, butler: Butler) -> None:
        self.butler = butler
        self._types: dict[str, _Gathered] = {}
        self.size = 0

    def dimensions(self, name: str) -> tuple[str, ...]:
        """The registered dimensions of dataset type ``name`` (MissingDatasetTypeError)."""
        return (self._types.get(name) or self._type(name)).dimensions

    def _type(self, name: str) -> _Gathered:
        found = self._types.get(name)
        if found is None:
            dims = self.butler.registry.get_dataset_type(name).dimensions
            key: Callable[[Any], Any] = (
                operator.itemgetter(*dims) if len(dims) > 1 else _one_value(dims[0])
            )
            found = self._types[name] = _Gathered(tuple(dims), key)
        return found

    def add(self, line: dict[str, Any]) -> int:
        """Gather the outputs of one succeeded quantum's line; return how many."""
        records = line.get("records")
        if not records:
            return 0
        outputs = {entry[1]: entry for entry in line.get("outputs") or ()}
        data_id: dict[str, Any] = line["data_id"]
        types = self._types
        n = 0
        for record in records:
            entry = outputs.get(record[0])
            if entry is None:
                continue  # a record of a file the quantum does not declare: not ours
            gathered = types.get(entry[0]) or self._type(entry[0])
            gathered.rows.append(record)
            gathered.keys.append(gathered.key(entry[2] if len(entry) > 2 else data_id))
            n += 1
        self.size += n
        return n

    def add_columns(self, columns: dict[str, TypeColumns]) -> int:
        """Gather the outputs of a manifest (:func:`read_manifest`); return how many."""
        n = 0
        for name, (_, ids, keys, paths, formatters, classes, sizes) in columns.items():
            gathered = self._types.get(name) or self._type(name)
            gathered.flush_rows()
            gathered.blocks.append((ids, keys, paths, formatters, classes, sizes))
            n += len(ids)
        self.size += n
        return n

    def take(self) -> list[DatasetColumns]:
        """The gathered datasets as columns (and forget them)."""
        out = []
        for name, gathered in self._types.items():
            gathered.flush_rows()
            blocks = gathered.blocks
            if not blocks:
                continue
            if len(blocks) == 1:
                ids, keys, paths, formatters, classes, sizes = blocks[0]
            else:
                ids, keys, paths, formatters, classes, sizes = (
                    list(itertools.chain.from_iterable(b[c] for b in blocks)) for c in range(6)
                )
            blocks.clear()
            if len(set(ids)) < len(ids):  # a quantum recorded twice: the latest wins
                last = sorted({i: k for k, i in enumerate(ids)}.values())
                ids, keys, paths, formatters, classes, sizes = (
                    [col[k] for k in last] for col in (ids, keys, paths, formatters, classes, sizes)
                )
            formatters, classes, sizes = map(_shared, (formatters, classes, sizes))
            out.append(DatasetColumns(name, ids, keys, paths, formatters, classes, sizes))
        self.size = 0
        return out


class _Gathered:
    """One dataset type's gathered outputs: record rows from lines, column blocks."""

    __slots__ = ("blocks", "dimensions", "key", "keys", "rows")

    def __init__(self, dimensions: tuple[str, ...], key: Callable[[Any], Any]) -> None:
        self.dimensions, self.key = dimensions, key
        self.rows: list[Any] = []
        self.keys: list[Any] = []
        self.blocks: list[tuple[list[Any], ...]] = []

    def flush_rows(self) -> None:
        """Turn the record rows gathered so far into a column block."""
        if self.rows:
            ids, paths, formatters, classes, sizes = map(list, zip(*self.rows, strict=True))
            self.blocks.append((ids, self.keys, paths, formatters, classes, sizes))
            self.rows, self.keys = [], []


def _shared(column: list[Any]) -> list[Any]:
    """``column`` with one object repeated where all its values are equal.

    A dataset type's formatter and storage class (and often file size) are the same for
    every dataset, but parsed as one object per record line, scattered in memory; the
    registry later reads them in id order, and one shared object is ~0.04 CPU-s cheaper
    to bind for 50,000 datasets than 50,000 scattered ones.
    """
    if column and column.count(column[0]) == len(column):
        return [column[0]] * len(column)
    return column


def aggregate_run(
    repo: str | Path,
    run: str,
    *,
    clusters: set[str] | None = None,
    provenance: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
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
        with _exclusive(journal.directory / LOCK_FILE), _gc_paused():
            _register_new(butler, journal, clusters, batch_size, summary)
            if provenance:
                from rc2_platform.execution.provenance_table import write_provenance

                summary.provenance_rows = write_provenance(butler, journal)
    finally:
        if own:
            butler.close()
    summary.seconds = round(time.perf_counter() - wall0, 4)
    summary.cpu_seconds = round(time.process_time() - cpu0, 4)
    for phase in ("read", "write"):
        for field in (f"{phase}_seconds", f"{phase}_cpu_seconds"):
            setattr(summary, field, round(getattr(summary, field), 4))
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
    columns = _Columns(butler)
    moved: dict[str, int] = {}

    def flush() -> None:
        if columns.size:
            with summary.timed("read"):
                taken = columns.take()
            with summary.timed("write"):
                summary.registered += butler.register_output_columns(summary.run, taken)
        if moved:
            offsets.update(moved)
            moved.clear()
            _save_checkpoint(checkpoint_path, offsets)

    reading = summary.timed("read")
    for path in iter_records_files(journal.directory, clusters):
        key = str(path.relative_to(journal.directory))
        with reading:
            start = offsets.get(key, 0)
            if start and _size(path) <= start:
                continue  # nothing new since the checkpoint
            manifest = read_manifest(path, start, columns.dimensions)
            if manifest is not None:  # a finished job: its outputs as columns
                start, quanta, found = manifest
                summary.manifests += 1
                summary.quanta += quanta
                summary.datasets += columns.add_columns(found)
            lines, end = read_lines(path, start)
            if end == offsets.get(key, 0):
                continue
            summary.files += 1
            for line in lines:
                if line.get("kind") != "quantum":
                    continue
                summary.quanta += 1
                if line.get("status") == _SUCCEEDED:
                    summary.datasets += columns.add(line)
            moved[key] = end
        if columns.size >= batch_size:
            flush()
    flush()
