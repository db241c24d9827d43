"""PipelineGraph: the task/dataset-type graph of a pipeline, checked and sorted."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rc2_platform.core.dataset_types import DatasetType
from rc2_platform.errors import PipelineError
from rc2_platform.pipeline.connections import BaseConnection, ConnectionKind, LookupKind
from rc2_platform.pipeline.task_def import TaskDef

_PRODUCING = (ConnectionKind.OUTPUT, ConnectionKind.INIT_OUTPUT)


@dataclass(frozen=True)
class StepDef:
    """A named step: a subset of task labels run as one unit, in pipeline order.

    Attributes
    ----------
    name : str
        Subset name, e.g. ``step1``.
    labels : tuple[str, ...]
        Task labels of the step, in topological order.
    dimensions : tuple[str, ...]
        Dimensions along which the step may be split into independent graphs
        (informational; empty when the YAML gives none).
    description : str
        The subset's description.
    """

    name: str
    labels: tuple[str, ...]
    dimensions: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class DatasetTypeNode:
    """A dataset type of the pipeline and its edges.

    Attributes
    ----------
    dataset_type : DatasetType
        Name, dimensions, storage class, calibration flag.
    producer : str or None
        Label of the task writing it; None for an overall input.
    consumers : tuple[str, ...]
        Labels of the tasks reading it, in topological order.
    is_prerequisite : bool
        Whether it is read through a PrerequisiteInput.
    is_init : bool
        Whether it is an init-input/init-output (no dimensions, one per RUN).
    lookup : LookupKind or None
        How prerequisites are found; None for regular datasets.
    """

    dataset_type: DatasetType
    producer: str | None
    consumers: tuple[str, ...]
    is_prerequisite: bool = False
    is_init: bool = False
    lookup: LookupKind | None = None

    @property
    def name(self) -> str:
        """Dataset type name."""
        return self.dataset_type.name


@dataclass(frozen=True)
class _Use:
    label: str
    connection: BaseConnection


class PipelineGraph:
    """Tasks in dependency order, dataset type nodes, and producer/consumer maps.

    Build with :meth:`Pipeline.to_graph`; the constructor checks that every dataset
    type has one producer at most, that producer and consumers agree on its
    dimensions and storage class, that no prerequisite is produced by a task, and
    that the task graph has no cycle.

    Attributes
    ----------
    tasks : tuple[TaskDef, ...]
        Tasks in a topological order (pipeline order breaks ties).
    dataset_types : dict[str, DatasetTypeNode]
        Every dataset type read or written, by name.
    producers : dict[str, str]
        Dataset type name -> label of the producing task.
    consumers : dict[str, tuple[str, ...]]
        Dataset type name -> labels of consuming tasks.
    overall_inputs : tuple[str, ...]
        Dataset types consumed but produced by no task (regular, prerequisite and
        init inputs), sorted by name.
    steps : tuple[StepDef, ...]
        The pipeline's steps, in order, restricted to the tasks present.
    """

    def __init__(self, task_defs: Sequence[TaskDef], steps: Sequence[StepDef] = ()) -> None:
        uses = _collect_uses(task_defs)
        self.dataset_types: dict[str, DatasetTypeNode] = {
            name: _make_node(name, u) for name, u in uses.items()
        }
        self.producers = {n: d.producer for n, d in self.dataset_types.items() if d.producer}
        order = _topological_order(task_defs, self.dataset_types)
        by_label = {t.label: t for t in task_defs}
        self.tasks: tuple[TaskDef, ...] = tuple(by_label[label] for label in order)
        rank = {label: i for i, label in enumerate(order)}
        self.consumers: dict[str, tuple[str, ...]] = {}
        for name, node in list(self.dataset_types.items()):
            ordered = tuple(sorted(node.consumers, key=rank.__getitem__))
            self.dataset_types[name] = _replace_consumers(node, ordered)
            self.consumers[name] = ordered
        self.overall_inputs: tuple[str, ...] = tuple(
            sorted(n for n, d in self.dataset_types.items() if d.producer is None)
        )
        self.steps: tuple[StepDef, ...] = tuple(
            StepDef(
                s.name, tuple(lb for lb in order if lb in s.labels), s.dimensions, s.description
            )
            for s in steps
            if any(lb in rank for lb in s.labels)
        )

    @property
    def labels(self) -> tuple[str, ...]:
        """Task labels in topological order."""
        return tuple(t.label for t in self.tasks)

    def step_of(self, label: str) -> str | None:
        """Name of the first step containing ``label``, or None."""
        for step in self.steps:
            if label in step.labels:
                return step.name
        return None

    def task(self, label: str) -> TaskDef:
        """Return the task with ``label``; PipelineError if absent."""
        for t in self.tasks:
            if t.label == label:
                return t
        raise PipelineError(f"no task {label!r} in this pipeline (tasks: {list(self.labels)})")

    def upstream(self, label: str) -> tuple[str, ...]:
        """Labels of the tasks producing the (init-)inputs of ``label``."""
        task = self.task(label)
        found = {
            self.producers[c.dataset_type_name]
            for c in task.connections.values()
            if c.kind not in _PRODUCING and c.dataset_type_name in self.producers
        }
        return tuple(lb for lb in self.labels if lb in found)

    def downstream(self, label: str) -> tuple[str, ...]:
        """Labels of the tasks consuming any (init-)output of ``label``."""
        task = self.task(label)
        found: set[str] = set()
        for c in task.connections.values():
            if c.kind in _PRODUCING:
                found.update(self.consumers.get(c.dataset_type_name, ()))
        return tuple(lb for lb in self.labels if lb in found)

    def edges(self) -> list[tuple[str, str, str]]:
        """Task-level edges ``(producer label, consumer label, dataset type name)``."""
        return [
            (node.producer, consumer, name)
            for name, node in self.dataset_types.items()
            if node.producer is not None
            for consumer in node.consumers
        ]

    def registry_dataset_types(self) -> list[DatasetType]:
        """All dataset types, sorted by name, ready to register in a registry."""
        return [self.dataset_types[n].dataset_type for n in sorted(self.dataset_types)]


def _collect_uses(task_defs: Iterable[TaskDef]) -> dict[str, list[_Use]]:
    uses: dict[str, list[_Use]] = {}
    for task in task_defs:
        for conn in task.connections.values():
            uses.setdefault(conn.dataset_type_name, []).append(_Use(task.label, conn))
    return uses


def _make_node(name: str, uses: list[_Use]) -> DatasetTypeNode:
    producers = [u for u in uses if u.connection.kind in _PRODUCING]
    if len(producers) > 1:
        raise PipelineError(
            f"dataset type {name!r} is produced by more than one task: "
            f"{[u.label for u in producers]}; rename one output in the pipeline"
        )
    reference = producers[0] if producers else uses[0]
    ref_type = reference.connection.dataset_type()
    for use in uses:
        other = use.connection.dataset_type()
        if use is reference:
            continue
        if set(other.dimensions) != set(ref_type.dimensions) or (
            other.storage_class != ref_type.storage_class
        ):
            raise PipelineError(
                f"dataset type {name!r} is defined differently by task {reference.label!r} "
                f"({_role(reference)} {reference.connection.name!r}: "
                f"{reference.connection.describe()}) and task {use.label!r} "
                f"({_role(use)} {use.connection.name!r}: {use.connection.describe()}); "
                "make the dimensions and storage class agree"
            )
    prereqs = [u for u in uses if u.connection.kind is ConnectionKind.PREREQUISITE_INPUT]
    if prereqs and producers:
        raise PipelineError(
            f"dataset type {name!r} is a prerequisite input of task {prereqs[0].label!r} but is "
            f"produced by task {producers[0].label!r}; prerequisites must exist before the graph "
            "is built, so make it a regular Input"
        )
    lookup = getattr(prereqs[0].connection, "lookup", None) if prereqs else None
    is_calibration = any(u.connection.is_calibration for u in uses)
    return DatasetTypeNode(
        dataset_type=DatasetType(name, ref_type.dimensions, ref_type.storage_class, is_calibration),
        producer=producers[0].label if producers else None,
        consumers=tuple(
            dict.fromkeys(u.label for u in uses if u.connection.kind not in _PRODUCING)
        ),
        is_prerequisite=bool(prereqs),
        is_init=reference.connection.kind
        in (ConnectionKind.INIT_INPUT, ConnectionKind.INIT_OUTPUT),
        lookup=lookup,
    )


def _role(use: _Use) -> str:
    return use.connection.kind.value.replace("_", " ")


def _replace_consumers(node: DatasetTypeNode, consumers: tuple[str, ...]) -> DatasetTypeNode:
    return DatasetTypeNode(
        node.dataset_type, node.producer, consumers, node.is_prerequisite, node.is_init, node.lookup
    )


def _topological_order(
    task_defs: Sequence[TaskDef], nodes: dict[str, DatasetTypeNode]
) -> list[str]:
    """Kahn's algorithm; ties broken by pipeline order so the result is deterministic."""
    labels = [t.label for t in task_defs]
    deps: dict[str, set[str]] = {label: set() for label in labels}
    for node in nodes.values():
        if node.producer is None:
            continue
        for consumer in node.consumers:
            if consumer != node.producer:
                deps[consumer].add(node.producer)
            else:
                raise PipelineError(
                    f"task {consumer!r} both produces and consumes dataset type {node.name!r}"
                )
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(labels):
        ready = [lb for lb in labels if lb not in done and deps[lb] <= done]
        if not ready:
            stuck = [lb for lb in labels if lb not in done]
            raise PipelineError(f"the pipeline has a dependency cycle among tasks {stuck}")
        order.append(ready[0])
        done.add(ready[0])
    return order
