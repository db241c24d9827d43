"""Execute one quantum: read its inputs through the datastore, run the task, write outputs.

Workers hold no registry connection: every input and output ref is in the graph, output
paths come from the datastore's templates, and overall inputs (raws, calibrations, ...)
are found through the datastore records the orchestrator exported beforehand. Outputs are
written with ``overwrite=True`` (atomically: temporary file + rename), so files left by a
job that died before its outputs were registered never stop a retry or a resume.
"""

from __future__ import annotations

import copy
import logging
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rc2_platform.core.dataset_types import DatasetRef
from rc2_platform.datastore import DatastoreRecord, FileDatastore
from rc2_platform.errors import FileNotInDatastoreError, QuantumOutputError
from rc2_platform.execution.provenance import (
    LogCapture,
    QuantumTimer,
    peak_rss_mb,
    quantum_record,
)
from rc2_platform.execution.quantum_state import QuantumState
from rc2_platform.graph.model import Quantum, TaskSummary
from rc2_platform.pipeline import METADATA_CONNECTION, BaseConnection, PipelineTask
from rc2_platform.pipeline.task_def import import_task_class, make_config

__all__ = [
    "dataset_ids",
    "PreparedTask",
    "QuantumExecutor",
    "QuantumOutcome",
]

_log = logging.getLogger(__name__)

#: Number of overall-input objects (not produced by the graph) an executor keeps in memory.
INPUT_CACHE_SIZE = 32
_MISSING = object()


@dataclass
class QuantumOutcome:
    """What happened to one quantum; serialized into the job result file.

    Attributes
    ----------
    index : int
        The quantum's index in the graph.
    task_label : str
        Its task.
    data_id : dict
        Its data ID as plain data.
    status : QuantumState
        SUCCEEDED, FAILED or BLOCKED (an upstream output of the RUN is missing).
    error : str or None
        ``ExceptionType: message`` of a failure, or why it is blocked.
    error_type : str or None
        The exception class name (``MemoryError`` triggers a memory-escalated retry).
    timing : dict
        ``start``, ``end``, ``wall_seconds``, ``cpu_seconds``, ``run_seconds``.
    peak_rss_mb : float
        Peak resident memory of the worker process after the quantum.
    records : list of DatastoreRecord
        Files written for the quantum's outputs (empty unless succeeded).
    traceback : str or None
        The failure's traceback (last 20 frames).
    inputs : dict of str to list of str
        The quantum's input dataset ids, by dataset type name.
    outputs : list of list
        The quantum's output datasets as ``[dataset type, id]``, plus the output's data
        ID as a mapping when it is not the quantum's data ID restricted to the type's
        dimensions.
    """

    index: int
    task_label: str
    data_id: dict[str, Any]
    status: QuantumState
    error: str | None = None
    error_type: str | None = None
    timing: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    records: list[DatastoreRecord] = field(default_factory=list)
    traceback: str | None = None
    inputs: dict[str, list[str]] = field(default_factory=dict)
    outputs: list[list[Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain-data form for the job result file."""
        return {
            "index": self.index,
            "task": self.task_label,
            "data_id": self.data_id,
            "status": self.status.value,
            "error": self.error,
            "error_type": self.error_type,
            "timing": self.timing,
            "peak_rss_mb": self.peak_rss_mb,
            "traceback": self.traceback,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "records": [
                [str(r.dataset_id), r.path, r.formatter, r.storage_class, r.file_size]
                for r in self.records
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QuantumOutcome:
        """Rebuild an outcome written by :meth:`to_json`."""
        return cls(
            index=int(data["index"]),
            task_label=str(data["task"]),
            data_id=dict(data["data_id"]),
            status=QuantumState(data["status"]),
            error=data.get("error"),
            error_type=data.get("error_type"),
            timing=dict(data.get("timing") or {}),
            peak_rss_mb=float(data.get("peak_rss_mb") or 0.0),
            records=[
                DatastoreRecord(uuid.UUID(i), p, f, s, int(n))
                for i, p, f, s, n in data.get("records") or []
            ],
            traceback=data.get("traceback"),
            inputs=dict(data.get("inputs") or {}),
            outputs=list(data.get("outputs") or []),
        )


class PreparedTask:
    """A task of the graph, imported and configured once per worker process.

    Parameters
    ----------
    summary : TaskSummary
        The task as the graph records it (class path, config as plain data).
    source : str, optional
        The graph file, named in errors.

    Raises
    ------
    PipelineError
        If the class cannot be imported or the config is invalid.
    """

    def __init__(self, summary: TaskSummary, source: str = "") -> None:
        self.label = summary.label
        self.task_class = import_task_class(summary.task_class, summary.label, source)
        self.config = make_config(summary.label, self.task_class, summary.config)
        self.connections: Mapping[str, BaseConnection] = self.task_class.connections
        self.leaves_inputs_unchanged = bool(
            getattr(self.task_class, "leaves_inputs_unchanged", False)
        )

    def make(self) -> PipelineTask[Any]:
        """A fresh task instance (fresh ``metadata``) for one quantum."""
        return self.task_class(self.config, label=self.label)

    def is_multiple(self, connection: str) -> bool:
        """Whether a connection takes/makes a list (undeclared connections always do)."""
        decl = self.connections.get(connection)
        return True if decl is None else decl.multiple

    def is_deferred(self, connection: str) -> bool:
        """Whether the task wants a loader instead of the object."""
        decl = self.connections.get(connection)
        return decl is not None and decl.deferred_load


class _Blocked(Exception):
    """An input produced by an upstream quantum is missing."""


class QuantumExecutor:
    """Runs quanta against a datastore, without a registry.

    Parameters
    ----------
    datastore : FileDatastore
        Where inputs are read and outputs written.
    output_run : str
        The graph's output RUN: inputs in it are produced by upstream quanta, so a missing
        one makes the quantum *blocked* rather than failed.
    input_records : mapping of UUID to DatastoreRecord, optional
        Records of the overall inputs (files whose path does not follow the templates,
        e.g. ingested raws); other inputs are read from their template path.
    """

    def __init__(
        self,
        datastore: FileDatastore,
        output_run: str,
        input_records: Mapping[uuid.UUID, DatastoreRecord] | None = None,
    ) -> None:
        self.datastore = datastore
        self.output_run = output_run
        self.input_records = dict(input_records or {})
        # Overall inputs (not written by the graph: refcat shards, sky map, calibrations)
        # are often read by many quanta of a job; keep the last few, hand out copies.
        self._cache: OrderedDict[uuid.UUID, Any] = OrderedDict()

    def execute(self, quantum: Quantum, task: PreparedTask) -> QuantumOutcome:
        """Run one quantum; never raises for task failures (they become the outcome)."""
        data_id = dict(quantum.data_id.to_dict())
        outcome = QuantumOutcome(quantum.index, quantum.task_label, data_id, QuantumState.FAILED)
        outcome.inputs, outcome.outputs = dataset_ids(quantum)
        timer = QuantumTimer()
        read: list[str] = []
        with LogCapture() as capture:
            try:
                instance = task.make()
                bind = getattr(instance, "bind_quantum", None)
                if callable(bind):
                    bind(quantum.outputs)
                inputs = self._load_inputs(quantum, task, read)
                run_start = time.perf_counter()
                returned = instance.run_quantum(inputs, quantum.data_id)
                timer.run_seconds = time.perf_counter() - run_start
                pairs = _match_outputs(quantum, task, returned)
                records = [self.datastore.put(obj, ref, overwrite=True) for ref, obj in pairs]
                timer.stop()
                meta_refs = quantum.outputs.get(METADATA_CONNECTION, ())
                if meta_refs:
                    metadata = dict(instance.get_metadata())
                    metadata["quantum"] = quantum_record(
                        task_label=quantum.task_label,
                        data_id=data_id,
                        timer=timer,
                        inputs_read=read,
                    )
                    metadata["log"] = list(capture.lines)
                    records.append(self.datastore.put(metadata, meta_refs[0], overwrite=True))
                outcome.status, outcome.records = QuantumState.SUCCEEDED, records
            except _Blocked as exc:
                outcome.status, outcome.error = QuantumState.BLOCKED, str(exc)
            except BaseException as exc:  # noqa: BLE001 - any task failure is data
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                outcome.error = f"{type(exc).__name__}: {exc}"
                outcome.error_type = type(exc).__name__
                outcome.traceback = traceback.format_exc(limit=20)
                _log.error("quantum %s %s failed: %s", quantum.task_label, data_id, outcome.error)
        if not timer.end:
            timer.stop()
        outcome.timing = timer.as_dict()
        outcome.peak_rss_mb = peak_rss_mb()
        return outcome

    def _read(self, ref: DatasetRef, read: list[str], shared: bool = False) -> Any:
        if ref.run != self.output_run:
            obj = self._cached_read(ref, shared)
            read.append(str(ref.id))
            return obj
        try:
            obj = self.datastore.get(ref, self.input_records.get(ref.id))
        except FileNotInDatastoreError:
            if ref.run == self.output_run:
                raise _Blocked(
                    f"input {ref.dataset_type.name} {dict(ref.data_id.to_dict())} was not "
                    "produced (its upstream quantum failed or has not run)"
                ) from None
            raise
        read.append(str(ref.id))
        return obj

    def _cached_read(self, ref: DatasetRef, shared: bool = False) -> Any:
        """Read an overall input through a small LRU cache; each caller gets its own copy
        (``shared``: the cached object itself, for tasks that leave inputs unchanged)."""
        obj = self._cache.get(ref.id, _MISSING)
        if obj is _MISSING:
            obj = self.datastore.get(ref, self.input_records.get(ref.id))
            self._cache[ref.id] = obj
            if len(self._cache) > INPUT_CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(ref.id)
        return obj if shared else _private_copy(obj)

    def _load_inputs(self, quantum: Quantum, task: PreparedTask, read: list[str]) -> dict[str, Any]:
        inputs: dict[str, Any] = {}
        for conn, refs in quantum.inputs.items():
            if task.is_deferred(conn):
                # Check presence now (so a missing upstream output blocks), read on demand.
                for ref in refs:
                    if ref.run == self.output_run and not self.datastore.exists(ref):
                        self._read(ref, read)
                loaders = [_loader(self, ref, read) for ref in refs]
                inputs[conn] = loaders if task.is_multiple(conn) else loaders[0]
            else:
                shared = task.leaves_inputs_unchanged
                objs = [self._read(ref, read, shared) for ref in refs]
                if task.is_multiple(conn):
                    inputs[conn] = objs
                elif objs:
                    inputs[conn] = objs[0]
        return inputs


def dataset_ids(quantum: Quantum) -> tuple[dict[str, list[str]], list[list[Any]]]:
    """A quantum's input ids by dataset type, and its outputs as ``[type, id(, data ID)]``."""
    inputs: dict[str, list[str]] = {}
    for ref in quantum.all_inputs():
        inputs.setdefault(ref.dataset_type.name, []).append(str(ref.id))
    outputs: list[list[Any]] = []
    qid = quantum.data_id
    for ref in quantum.all_outputs():
        entry: list[Any] = [ref.dataset_type.name, str(ref.id)]
        did = ref.data_id
        if any(d not in qid or qid[d] != did[d] for d in did.dimensions):
            entry.append(dict(did.to_dict()))
        outputs.append(entry)
    return inputs, outputs


def _private_copy(obj: Any) -> Any:
    """A copy a task may change freely: ``copy()`` for arrays and astropy tables (their
    data and meta copied; 5-10x faster than ``deepcopy`` of a table), else ``deepcopy``."""
    module = type(obj).__module__
    if module == "numpy" and hasattr(obj, "copy") or module.startswith("astropy.table."):
        return obj.copy()
    return copy.deepcopy(obj)


def _loader(executor: QuantumExecutor, ref: DatasetRef, read: list[str]) -> Callable[[], Any]:
    return lambda: executor._read(ref, read)


def _match_outputs(
    quantum: Quantum, task: PreparedTask, returned: Mapping[str, Any]
) -> list[tuple[DatasetRef, Any]]:
    """Pair returned objects with the quantum's output refs, or raise QuantumOutputError."""
    expected = {c: refs for c, refs in quantum.outputs.items() if c != METADATA_CONNECTION}
    if not isinstance(returned, Mapping):
        raise QuantumOutputError(
            f"task {quantum.task_label!r} returned a {type(returned).__name__}, not a dict of "
            f"outputs {sorted(expected)}"
        )
    unexpected = sorted(set(returned) - set(expected))
    missing = sorted(c for c, refs in expected.items() if refs and c not in returned)
    if unexpected or missing:
        raise QuantumOutputError(
            f"task {quantum.task_label!r} on {dict(quantum.data_id.to_dict())} returned "
            f"unexpected output(s) {unexpected} and lacks output(s) {missing}; the quantum "
            f"expects {sorted(expected)}"
        )
    pairs: list[tuple[DatasetRef, Any]] = []
    for conn, refs in expected.items():
        if not refs:
            continue
        obj = returned[conn]
        if task.is_multiple(conn) and isinstance(obj, (list, tuple)):
            if len(obj) != len(refs):
                raise QuantumOutputError(
                    f"task {quantum.task_label!r} returned {len(obj)} object(s) for output "
                    f"{conn!r}; the quantum expects {len(refs)}"
                )
            pairs.extend(zip(refs, obj, strict=True))
        elif len(refs) == 1:
            pairs.append((refs[0], obj))
        else:
            raise QuantumOutputError(
                f"task {quantum.task_label!r} returned one object for output {conn!r}; "
                f"the quantum expects a list of {len(refs)}"
            )
    return pairs
