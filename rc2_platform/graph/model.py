"""The in-memory QuantumGraph: quanta, their resolved dataset refs, and the DAG between them."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import DatasetRef, DatasetType
from rc2_platform.errors import GraphError


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """What the graph records of one pipeline task.

    Parameters
    ----------
    label : str
        The task's label in the pipeline (``isr``, ``calibrate``, ...).
    task_class : str
        Dotted path of the PipelineTask class.
    dimensions : tuple[str, ...]
        Dimensions of the task's quanta.
    config : dict
        The task's full, validated configuration as plain data.
    step : str or None
        The pipeline step (subset) the task belongs to, used for staging and clustering.
    """

    label: str
    task_class: str
    dimensions: tuple[str, ...]
    config: Mapping[str, Any] = field(default_factory=dict)
    step: str | None = None


@dataclass(slots=True)
class Quantum:
    """One task run on one data ID, with every input and output resolved to a ref.

    ``inputs`` includes prerequisite inputs; keys are connection names.
    """

    index: int
    task_label: str
    data_id: DataCoordinate
    inputs: dict[str, tuple[DatasetRef, ...]]
    outputs: dict[str, tuple[DatasetRef, ...]]

    def all_inputs(self) -> Iterator[DatasetRef]:
        """Iterate over every input ref, all connections together."""
        for refs in self.inputs.values():
            yield from refs

    def all_outputs(self) -> Iterator[DatasetRef]:
        """Iterate over every output ref, all connections together."""
        for refs in self.outputs.values():
            yield from refs


class QuantumGraph:
    """All quanta of one pipeline over one data query, with the dataset edges between them.

    Parameters
    ----------
    tasks : sequence of TaskSummary
        Tasks in pipeline (topological) order.
    quanta : sequence of Quantum
        Quanta; ``quanta[i].index`` must equal ``i``.
    output_run : str
        The RUN collection the graph's outputs go to.
    input_collections : sequence of str
        The collections inputs were searched in, in order.
    init_outputs : mapping of str to sequence of DatasetRef, optional
        Per task label, the datasets written once before any quantum (configs, schemas).
    metadata : mapping, optional
        Free-form provenance: user, time, where-expression, pipeline file, pruning report.
    clusters : mapping of str to sequence of int, optional
        Quantum indexes grouped into jobs, by cluster name.
    """

    def __init__(
        self,
        tasks: Sequence[TaskSummary],
        quanta: Sequence[Quantum],
        *,
        output_run: str,
        input_collections: Sequence[str],
        init_outputs: Mapping[str, Sequence[DatasetRef]] | None = None,
        metadata: Mapping[str, Any] | None = None,
        clusters: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        self.tasks = list(tasks)
        self.quanta = list(quanta)
        for i, q in enumerate(self.quanta):
            if q.index != i:
                raise GraphError(
                    f"quantum {q.task_label} {q.data_id} has index {q.index}, expected {i}"
                )
        labels = {t.label for t in self.tasks}
        unknown = {q.task_label for q in self.quanta} - labels
        if unknown:
            raise GraphError(f"quanta refer to task labels {sorted(unknown)} that the graph lacks")
        self.output_run = output_run
        self.input_collections = list(input_collections)
        self.init_outputs = {k: list(v) for k, v in (init_outputs or {}).items()}
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.clusters: dict[str, list[int]] = {k: list(v) for k, v in (clusters or {}).items()}

    # --- lookups ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.quanta)

    def task(self, label: str) -> TaskSummary:
        """Return the task summary for ``label``."""
        for t in self.tasks:
            if t.label == label:
                return t
        raise GraphError(
            f"graph has no task labelled {label!r}; it has {[t.label for t in self.tasks]}"
        )

    def quanta_for_task(self, label: str) -> list[Quantum]:
        """All quanta of one task."""
        return [q for q in self.quanta if q.task_label == label]

    @cached_property
    def producers(self) -> dict[Any, int]:
        """Map of output dataset UUID to the index of the quantum that writes it."""
        result: dict[Any, int] = {}
        for q in self.quanta:
            for ref in q.all_outputs():
                if ref.id in result:
                    other = self.quanta[result[ref.id]]
                    raise GraphError(
                        f"dataset {ref} is written by both {other.task_label} {other.data_id} "
                        f"and {q.task_label} {q.data_id}"
                    )
                result[ref.id] = q.index
        return result

    @cached_property
    def upstream(self) -> list[frozenset[int]]:
        """Per quantum index, the indexes of the quanta whose outputs it reads."""
        producers = self.producers
        return [
            frozenset(producers[r.id] for r in q.all_inputs() if r.id in producers)
            for q in self.quanta
        ]

    @cached_property
    def downstream(self) -> list[frozenset[int]]:
        """Per quantum index, the indexes of the quanta that read its outputs."""
        down: list[set[int]] = [set() for _ in self.quanta]
        for i, ups in enumerate(self.upstream):
            for u in ups:
                down[u].add(i)
        return [frozenset(d) for d in down]

    def all_downstream(self, indexes: Iterable[int]) -> set[int]:
        """Every quantum that depends, directly or not, on any of ``indexes`` (excluded)."""
        seen: set[int] = set()
        stack = list(indexes)
        while stack:
            for d in self.downstream[stack.pop()]:
                if d not in seen:
                    seen.add(d)
                    stack.append(d)
        return seen

    def topological_order(self, indexes: Iterable[int] | None = None) -> list[int]:
        """Quantum indexes (all, or the given subset) ordered so producers come first."""
        subset = set(range(len(self.quanta))) if indexes is None else set(indexes)
        task_rank = {t.label: i for i, t in enumerate(self.tasks)}
        # Tasks are stored in pipeline topological order, so sorting by task rank is a valid
        # topological order of quanta; ties keep index order for determinism.
        return sorted(subset, key=lambda i: (task_rank[self.quanta[i].task_label], i))

    # --- summaries ------------------------------------------------------------------

    def counts_by_task(self) -> dict[str, int]:
        """Number of quanta per task label, in pipeline order (tasks with none included)."""
        counts = Counter(q.task_label for q in self.quanta)
        return {t.label: counts.get(t.label, 0) for t in self.tasks}

    def task_edges(self) -> dict[tuple[str, str], int]:
        """Task-level DAG: (producer label, consumer label) -> number of quantum edges."""
        edges: dict[tuple[str, str], int] = defaultdict(int)
        for q, ups in zip(self.quanta, self.upstream, strict=True):
            for u in ups:
                edges[(self.quanta[u].task_label, q.task_label)] += 1
        return dict(edges)

    def dataset_types(self) -> dict[str, DatasetType]:
        """Every dataset type referenced by the graph, by name."""
        result: dict[str, DatasetType] = {}
        for q in self.quanta:
            for ref in (*q.all_inputs(), *q.all_outputs()):
                result.setdefault(ref.dataset_type.name, ref.dataset_type)
        for refs in self.init_outputs.values():
            for ref in refs:
                result.setdefault(ref.dataset_type.name, ref.dataset_type)
        return result
