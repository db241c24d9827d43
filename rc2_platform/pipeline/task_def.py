"""TaskDef: one labelled, configured task of a pipeline, with its final connections."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pydantic

from rc2_platform.errors import DimensionError, PipelineError
from rc2_platform.pipeline.connections import (
    CONFIG_STORAGE_CLASS,
    METADATA_STORAGE_CLASS,
    BaseConnection,
    ConnectionKind,
    InitOutput,
    Output,
    config_dataset_type_name,
    metadata_dataset_type_name,
)
from rc2_platform.pipeline.task import PipelineTask, TaskConfig
from rc2_platform.pipeline.task_modules import check_task_class
from rc2_platform.registry.dimensions import DimensionUniverse

#: Connection names every task gets automatically; tasks may not declare them.
METADATA_CONNECTION = "metadata"
CONFIG_CONNECTION = "config"
RESERVED_CONNECTION_NAMES = frozenset({METADATA_CONNECTION, CONFIG_CONNECTION})


@dataclass(frozen=True)
class TaskDef:
    """A task of a pipeline: label, class, validated config and final connections.

    Attributes
    ----------
    label : str
        Label of the task in the pipeline, e.g. ``calibrate``.
    task_class : type[PipelineTask]
        The task class.
    config : TaskConfig
        The validated, frozen config (defaults + pipeline overrides).
    dimensions : tuple[str, ...]
        Dimensions of one quantum.
    connections : Mapping[str, BaseConnection]
        Connections by name, after config-dependent adjustment and dataset type
        renames, plus the automatic ``metadata`` output (``{label}_metadata``,
        quantum dimensions, StructuredDataDict) and ``config`` init-output
        (``{label}_config``, Config).
    """

    label: str
    task_class: type[PipelineTask[Any]]
    config: TaskConfig
    dimensions: tuple[str, ...]
    connections: Mapping[str, BaseConnection] = field(default_factory=dict)

    @property
    def task_class_name(self) -> str:
        """Dotted import path of the task class."""
        return f"{self.task_class.__module__}.{self.task_class.__qualname__}"

    def of_kind(self, kind: ConnectionKind) -> dict[str, BaseConnection]:
        """Connections of one kind, by connection name, in declaration order."""
        return {n: c for n, c in self.connections.items() if c.kind is kind}

    @property
    def inputs(self) -> dict[str, BaseConnection]:
        """Regular input connections."""
        return self.of_kind(ConnectionKind.INPUT)

    @property
    def prerequisite_inputs(self) -> dict[str, BaseConnection]:
        """Prerequisite input connections (see ``PrerequisiteInput.lookup``)."""
        return self.of_kind(ConnectionKind.PREREQUISITE_INPUT)

    @property
    def outputs(self) -> dict[str, BaseConnection]:
        """Output connections, including the automatic ``metadata`` output."""
        return self.of_kind(ConnectionKind.OUTPUT)

    @property
    def run_outputs(self) -> dict[str, BaseConnection]:
        """Outputs that :meth:`PipelineTask.run` returns (all but ``metadata``)."""
        return {n: c for n, c in self.outputs.items() if n != METADATA_CONNECTION}

    @property
    def init_inputs(self) -> dict[str, BaseConnection]:
        """Init-input connections."""
        return self.of_kind(ConnectionKind.INIT_INPUT)

    @property
    def init_outputs(self) -> dict[str, BaseConnection]:
        """Init-output connections, including the automatic ``config`` init-output."""
        return self.of_kind(ConnectionKind.INIT_OUTPUT)

    @property
    def metadata_dataset_type_name(self) -> str:
        """``{label}_metadata``."""
        return metadata_dataset_type_name(self.label)

    @property
    def config_dataset_type_name(self) -> str:
        """``{label}_config``."""
        return config_dataset_type_name(self.label)

    def make_task(self) -> PipelineTask[Any]:
        """Construct the task with this config and label."""
        return self.task_class(self.config, label=self.label)


def import_task_class(dotted: str, label: str, source: str = "") -> type[PipelineTask[Any]]:
    """Import ``package.module.ClassName`` and check it is a PipelineTask subclass.

    The path is first checked against the allow-list of task modules
    (:func:`~rc2_platform.pipeline.task_modules.check_task_class`): a class outside it is
    refused without importing anything.

    Raises
    ------
    PipelineError
        Naming the file (``source``), the label and class path if the class is not
        allowed, the import fails or the class is wrong.
    """
    module_name, class_name = check_task_class(dotted, label, source)
    where = f"{source}: " if source else ""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PipelineError(
            f"{where}task {label!r}: cannot import module {module_name!r} for class {dotted!r}: "
            f"{exc}"
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise PipelineError(
            f"{where}task {label!r}: module {module_name!r} has no class {class_name!r}"
        )
    if not (isinstance(cls, type) and issubclass(cls, PipelineTask)):
        raise PipelineError(f"{where}task {label!r}: {dotted!r} is not a PipelineTask subclass")
    return cls


def make_config(
    label: str, task_class: type[PipelineTask[Any]], overrides: Mapping[str, Any]
) -> TaskConfig:
    """Validate ``overrides`` against the task's ConfigClass.

    Raises
    ------
    PipelineError
        Naming the label, the field and the problem for every invalid override.
    """
    try:
        return task_class.ConfigClass().with_overrides(overrides)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"field {'.'.join(str(p) for p in err['loc']) or '<root>'!r}: {err['msg']}"
            + (f" (got {err['input']!r})" if err["type"] != "missing" else "")
            for err in exc.errors()
        )
        raise PipelineError(
            f"task {label!r} ({task_class.__name__}) has an invalid config: {problems}; "
            f"fix the 'config' of {label!r} in the pipeline"
        ) from None


def build_task_def(
    label: str,
    task_class: type[PipelineTask[Any]],
    config: TaskConfig,
    renames: Mapping[str, str] | None = None,
    universe: DimensionUniverse | None = None,
) -> TaskDef:
    """Assemble the final connections of one task and check them.

    Parameters
    ----------
    label : str
        Task label.
    task_class : type[PipelineTask]
        The task class.
    config : TaskConfig
        Its validated config.
    renames : Mapping[str, str], optional
        Connection name -> dataset type name overrides from the pipeline YAML.
    universe : DimensionUniverse, optional
        Used to check dimension names and put them in canonical order; the
        universe shipped in the package by default.

    Raises
    ------
    PipelineError
        For unknown renamed connections, reserved connection names, unknown
        dimensions, or an output whose dimensions are not implied by the quantum's.
    """
    universe = universe or default_universe()
    declared = dict(task_class.connections)
    bad = RESERVED_CONNECTION_NAMES.intersection(declared)
    if bad:
        raise PipelineError(
            f"task {label!r} ({task_class.__name__}) declares reserved connection name(s) "
            f"{sorted(bad)}; rename them"
        )
    connections = dict(task_class.adjust_connections(config, declared))
    for name, dataset_type_name in (renames or {}).items():
        if name not in connections:
            raise PipelineError(
                f"task {label!r}: cannot rename connection {name!r}: it has no such connection "
                f"(it has {sorted(connections)})"
            )
        try:
            connections[name] = connections[name].with_dataset_type_name(dataset_type_name)
        except ValueError as exc:
            raise PipelineError(f"task {label!r}: connection {name!r}: {exc}") from None
    dims = _canonical(universe, task_class.dimensions, label, "quantum dimensions")
    connections = {
        n: replace(c, dimensions=_canonical(universe, c.dimensions, label, f"connection {n!r}"))
        for n, c in connections.items()
    }
    connections[METADATA_CONNECTION] = Output(
        name=METADATA_CONNECTION,
        dataset_type_name=metadata_dataset_type_name(label),
        dimensions=dims,
        storage_class=METADATA_STORAGE_CLASS,
        doc="Task metadata recorded by the executor.",
    )
    connections[CONFIG_CONNECTION] = InitOutput(
        name=CONFIG_CONNECTION,
        dataset_type_name=config_dataset_type_name(label),
        storage_class=CONFIG_STORAGE_CLASS,
        doc="The task's config, written once per RUN.",
    )
    expanded = set(universe.expand(dims))
    for name, conn in connections.items():
        if conn.kind is ConnectionKind.OUTPUT and not set(conn.dimensions) <= expanded:
            raise PipelineError(
                f"task {label!r}: output {name!r} ({conn.describe()}) has dimensions not "
                f"determined by the quantum dimensions {list(dims)}"
            )
        if conn.kind in (ConnectionKind.INIT_INPUT, ConnectionKind.INIT_OUTPUT) and conn.dimensions:
            raise PipelineError(
                f"task {label!r}: init connection {name!r} must have no dimensions, "
                f"not {list(conn.dimensions)}"
            )
    return TaskDef(label, task_class, config, dims, connections)


@functools.cache
def default_universe() -> DimensionUniverse:
    """The dimension universe shipped in the package (loaded once)."""
    return DimensionUniverse.default()


def _canonical(
    universe: DimensionUniverse, dimensions: Iterable[str], label: str, what: str
) -> tuple[str, ...]:
    try:
        return universe.sorted(dimensions)
    except DimensionError as exc:
        raise PipelineError(f"task {label!r}: {what}: {exc}") from None
