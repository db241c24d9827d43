"""Connections: how a PipelineTask declares the datasets it reads and writes.

A connection ties a task-local name (the keyword the task's ``run`` receives or
returns) to a dataset type: its name, dimensions and storage class. Connections are
declared as class attributes of a :class:`~rc2_platform.pipeline.task.PipelineTask`
subclass; the attribute name becomes the connection name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import ClassVar

from rc2_platform.core.dataset_types import DatasetType


class ConnectionKind(enum.Enum):
    """The five kinds of connection."""

    INPUT = "input"
    PREREQUISITE_INPUT = "prerequisite_input"
    OUTPUT = "output"
    INIT_INPUT = "init_input"
    INIT_OUTPUT = "init_output"


class LookupKind(enum.Enum):
    """How the QuantumGraph builder finds the datasets of a prerequisite input.

    ``PLAIN`` datasets are found by the quantum's data ID (their dimensions must be
    implied by the quantum's); ``CALIBRATION`` datasets are found in CALIBRATION
    collections by the validity time span of the quantum's exposure or visit;
    ``SPATIAL`` datasets (e.g. reference catalog ``htm7`` shards) are those whose
    region overlaps the quantum's region.
    """

    PLAIN = "plain"
    CALIBRATION = "calibration"
    SPATIAL = "spatial"


@dataclass(frozen=True, kw_only=True)
class BaseConnection:
    """Fields common to every connection.

    Parameters
    ----------
    dataset_type_name : str
        Name of the dataset type read or written, e.g. ``calexp``.
    dimensions : tuple[str, ...]
        Dimensions of the dataset type (empty for init-inputs/outputs).
    storage_class : str
        Storage class name, one of ``rc2_platform/config/storage_classes.yaml``.
    doc : str
        One-line description shown by ``rc2 pipeline show``.
    name : str
        Task-local connection name; set from the class attribute name when the
        connection is declared on a task class.
    multiple : bool
        Whether the task takes (or makes) a list of datasets for one quantum.
    deferred_load : bool
        Whether the executor passes a loader (a zero-argument callable returning the
        object) instead of the loaded object, so the task reads it when it needs it.
    minimum : int
        Fewest datasets a quantum needs on this connection; the graph builder prunes
        quanta with fewer. ``0`` makes the connection optional.
    """

    kind: ClassVar[ConnectionKind]

    dataset_type_name: str
    dimensions: tuple[str, ...] = ()
    storage_class: str
    doc: str = ""
    name: str = ""
    multiple: bool = False
    deferred_load: bool = False
    minimum: int = 1

    def __post_init__(self) -> None:
        if not self.dataset_type_name or not self.dataset_type_name.isidentifier():
            raise ValueError(f"invalid dataset type name {self.dataset_type_name!r}")
        if not isinstance(self.dimensions, tuple):
            object.__setattr__(self, "dimensions", tuple(self.dimensions))
        if self.minimum < 0:
            raise ValueError(f"connection minimum must be >= 0, not {self.minimum}")
        if self.minimum > 1 and not self.multiple:
            raise ValueError(
                f"connection {self.name or self.dataset_type_name!r} has minimum={self.minimum} "
                "but is not multiple"
            )

    @property
    def is_calibration(self) -> bool:
        """Whether the dataset type is a calibration (only prerequisites may be)."""
        return False

    def dataset_type(self) -> DatasetType:
        """Return the registry :class:`DatasetType` this connection reads or writes."""
        return DatasetType(
            self.dataset_type_name, self.dimensions, self.storage_class, self.is_calibration
        )

    def with_name(self, name: str) -> BaseConnection:
        """Return a copy with the task-local ``name`` set."""
        return replace(self, name=name)

    def with_dataset_type_name(self, dataset_type_name: str) -> BaseConnection:
        """Return a copy reading/writing a differently named dataset type."""
        return replace(self, dataset_type_name=dataset_type_name)

    def describe(self) -> str:
        """One-line definition, e.g. ``calexp(instrument, visit, detector) [Exposure]``."""
        flags = [
            f for f, on in (("multiple", self.multiple), ("deferred", self.deferred_load)) if on
        ]
        extra = f" {{{', '.join(flags)}}}" if flags else ""
        return (
            f"{self.dataset_type_name}({', '.join(self.dimensions)}) [{self.storage_class}]{extra}"
        )


@dataclass(frozen=True, kw_only=True)
class Input(BaseConnection):
    """A regular input: produced by an upstream task or an overall input of the pipeline."""

    kind: ClassVar[ConnectionKind] = ConnectionKind.INPUT


@dataclass(frozen=True, kw_only=True)
class PrerequisiteInput(BaseConnection):
    """An input that must exist before the graph is built and is never produced by a task.

    Parameters
    ----------
    lookup : LookupKind
        How the graph builder finds the datasets (see :class:`LookupKind`).
    calibration : bool
        Whether the dataset type is a calibration (certified with validity ranges);
        implied by ``lookup=LookupKind.CALIBRATION``.
    """

    kind: ClassVar[ConnectionKind] = ConnectionKind.PREREQUISITE_INPUT

    lookup: LookupKind = LookupKind.PLAIN
    calibration: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lookup is LookupKind.CALIBRATION:
            object.__setattr__(self, "calibration", True)

    @property
    def is_calibration(self) -> bool:  # noqa: D102 - documented on the base class
        return self.calibration


@dataclass(frozen=True, kw_only=True)
class Output(BaseConnection):
    """A dataset written by every quantum of the task (its dimensions ⊆ the quantum's)."""

    kind: ClassVar[ConnectionKind] = ConnectionKind.OUTPUT


@dataclass(frozen=True, kw_only=True)
class InitInput(BaseConnection):
    """A dataset read once when the task is constructed (no dimensions), e.g. a schema."""

    kind: ClassVar[ConnectionKind] = ConnectionKind.INIT_INPUT


@dataclass(frozen=True, kw_only=True)
class InitOutput(BaseConnection):
    """A dataset written once per RUN when the task is constructed, e.g. its config."""

    kind: ClassVar[ConnectionKind] = ConnectionKind.INIT_OUTPUT


#: Storage class of the per-task metadata output ``{label}_metadata``.
METADATA_STORAGE_CLASS = "StructuredDataDict"
#: Storage class of the per-task config init-output ``{label}_config``.
CONFIG_STORAGE_CLASS = "Config"


def metadata_dataset_type_name(label: str) -> str:
    """Name of the metadata dataset type every task writes per quantum: ``{label}_metadata``."""
    return f"{label}_metadata"


def config_dataset_type_name(label: str) -> str:
    """Name of the config init-output every task writes once per RUN: ``{label}_config``."""
    return f"{label}_config"
