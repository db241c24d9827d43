"""Generic stand-in tasks: read every input, write small outputs (tests and benchmarks).

:class:`StandInTask` declares no connections: it takes whatever the quantum gives it (every
input connection as a list) and returns one small object per output ref, chosen by the
output's storage class. :func:`stand_in_graph` replaces every task of a graph by it, which
is how the execution benchmark runs the RC2 graph without the science code.

Its config can make it fail on chosen data IDs, to test failure handling:

``fail_on``
    data IDs (partial mappings) on which it raises ``TaskError``;
``data_error_on``
    data IDs on which it raises ``TaskDataError`` (unusable data: never retried);
``exit_on``
    data IDs on which it kills its process with ``os._exit(3)`` (a job that dies);
``memory_error_on`` / ``memory_needed_mb``
    data IDs on which it raises ``MemoryError`` unless the job was given at least
    ``memory_needed_mb`` (environment ``RC2_JOB_MEMORY_MB``, set by the orchestrator);
``only_while_exists``
    a file path: the failures above happen only while that file exists ("the fix" is
    deleting it);
``once_marker``
    a file path: ``fail_on`` and ``exit_on`` happen only while that file does not exist,
    and the first of them creates it (a transient error: it happens once, a retry succeeds);
``sleep_seconds``
    time spent inside ``run`` (benchmarks).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import Field

from rc2_platform.core.dataset_types import DatasetRef
from rc2_platform.datastore import Exposure, load_datastore_config
from rc2_platform.errors import TaskDataError, TaskError
from rc2_platform.graph.model import QuantumGraph, TaskSummary
from rc2_platform.pipeline import PipelineTask, TaskConfig

__all__ = ["StandInConfig", "StandInTask", "stand_in_graph"]

STAND_IN_CLASS = "rc2_platform.execution.stand_in.StandInTask"


class StandInConfig(TaskConfig):
    """Config of :class:`StandInTask` (see the module docstring)."""

    fail_on: list[dict[str, Any]] = Field(default_factory=list)
    data_error_on: list[dict[str, Any]] = Field(default_factory=list)
    exit_on: list[dict[str, Any]] = Field(default_factory=list)
    memory_error_on: list[dict[str, Any]] = Field(default_factory=list)
    memory_needed_mb: int = Field(default=0, ge=0)
    only_while_exists: str | None = None
    once_marker: str | None = None
    sleep_seconds: float = Field(default=0.0, ge=0.0)
    counter_dir: str | None = Field(
        default=None, description="If set, append one line per execution to <dir>/<label>.log"
    )


def _matches(data_id: Mapping[str, Any], patterns: list[dict[str, Any]]) -> bool:
    return any(all(data_id.get(k) == v for k, v in p.items()) for p in patterns)


@functools.cache
def _formatters() -> dict[str, str]:
    return {n: c.formatter for n, c in load_datastore_config().storage_classes.items()}


def _small_object(storage_class: str, payload: dict[str, Any]) -> Any:
    formatter = _formatters().get(storage_class, "json")
    if formatter == "fits_exposure":
        return Exposure(np.zeros((4, 4), dtype=np.float32), header={"STANDIN": True})
    if formatter == "fits_image":
        return np.zeros((4, 4), dtype=np.float32)
    if formatter == "fits_table":
        from astropy.table import Table  # not at import: the orchestrator imports this

        return Table({"id": np.arange(3), "value": np.zeros(3)})
    return payload


class StandInTask(PipelineTask[StandInConfig]):
    """Reads every input and writes one small object per output ref."""

    default_label = "standIn"
    ConfigClass = StandInConfig
    leaves_inputs_unchanged = True  # it only counts them

    def __init__(self, config: StandInConfig | None = None, *, label: str | None = None) -> None:
        super().__init__(config, label=label)
        self._outputs: dict[str, tuple[DatasetRef, ...]] = {}

    def bind_quantum(self, outputs: Mapping[str, tuple[DatasetRef, ...]]) -> None:
        """Learn the quantum's output refs (called by the executor before running)."""
        self._outputs = {c: refs for c, refs in outputs.items() if c != "metadata"}

    def _armed(self) -> bool:
        marker = self.config.only_while_exists
        return marker is None or os.path.exists(marker)

    def _once(self, patterns: list[dict[str, Any]], data_id: Mapping[str, Any]) -> bool:
        """Whether to fail on ``patterns`` now (``once_marker``: only the first time)."""
        if not _matches(data_id, patterns):
            return False
        marker = self.config.once_marker
        if marker is None:
            return True
        try:
            open(marker, "x").close()  # before failing: exit_on leaves at once
        except FileExistsError:
            return False
        return True

    def run_quantum(self, inputs: Mapping[str, Any], data_id: Mapping[str, Any]) -> dict[str, Any]:
        """Count inputs, maybe fail as configured, and return small outputs."""
        cfg = self.config
        data_id = dict(data_id)
        if cfg.counter_dir:
            with open(os.path.join(cfg.counter_dir, f"{self.label}.log"), "a") as f:
                f.write(f"{sorted(data_id.items())}\n")
        if self._armed():
            if self._once(cfg.exit_on, data_id):
                os._exit(3)
            if self._once(cfg.fail_on, data_id):
                raise TaskError(f"stand-in {self.label} told to fail on {data_id}")
            if _matches(data_id, cfg.data_error_on):
                raise TaskDataError(f"stand-in {self.label} given unusable data {data_id}")
            if _matches(data_id, cfg.memory_error_on):
                granted = int(os.environ.get("RC2_JOB_MEMORY_MB", "0"))
                if granted < cfg.memory_needed_mb:
                    raise MemoryError(
                        f"stand-in {self.label} needs {cfg.memory_needed_mb} MiB, job has {granted}"
                    )
        n_inputs = sum(len(v) if isinstance(v, list) else 1 for v in inputs.values())
        if cfg.sleep_seconds:
            time.sleep(cfg.sleep_seconds)
        self.metadata["n_inputs"] = n_inputs
        payload = {"stand_in": self.label, "data_id": data_id, "n_inputs": n_inputs}
        out: dict[str, Any] = {}
        for conn, refs in self._outputs.items():
            objs = [_small_object(r.dataset_type.storage_class, payload) for r in refs]
            out[conn] = objs
        return out


def stand_in_graph(graph: QuantumGraph, config: Mapping[str, Any] | None = None) -> QuantumGraph:
    """Return ``graph`` with every task replaced by :class:`StandInTask` (same quanta)."""
    tasks = [
        TaskSummary(t.label, STAND_IN_CLASS, t.dimensions, dict(config or {}), t.step)
        for t in graph.tasks
    ]
    return QuantumGraph(
        tasks,
        graph.quanta,
        output_run=graph.output_run,
        input_collections=graph.input_collections,
        init_outputs=graph.init_outputs,
        metadata=graph.metadata,
        clusters=graph.clusters,
    )
