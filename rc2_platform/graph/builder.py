"""The QuantumGraph builder: a few large set-based queries, everything else in memory.

Algorithm (see ``docs/qgraph.md``):

1. one ``query_data_id_rows`` over the union of every task's quantum dimensions and
   every regular connection's dimensions, constrained by the where-expression and by
   the existence of the pipeline's overall inputs (e.g. ``raw``) in the input
   collections;
2. each task's candidate quanta are the distinct projections of those rows onto its
   (expanded) dimensions, and each connection's datasets for a quantum the rows'
   projections onto the dataset type's dimensions, grouped by quantum;
3. one find-first query per overall input dataset type for all the data IDs needed;
4. prerequisites per task and dataset type: calibrations by validity time (one query
   for the exposure time spans, one ``find_calibrations``), sky-pixel shards by overlap
   (two queries), plain ones by data ID (one query);
5. quanta whose inputs are missing are pruned, in pipeline order, so the pruning
   propagates downstream; the reasons are counted in ``graph.metadata['pruned']``;
6. outputs get deterministic refs in the output run (:func:`output_ref`).

This module runs the queries (steps 1, 3, 4 and the existing-output lookup) and checks
the arguments; the in-memory steps live beside it: step 2 in
:mod:`rc2_platform.graph.task_plan`, steps 5 and 6 in
:mod:`rc2_platform.graph.quantum_assembly`, the prerequisite queries in ``_prereq``.
Nothing is written to the registry.
"""

from __future__ import annotations

import datetime
import getpass
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import CollectionType, DatasetRef, DatasetType
from rc2_platform.core.names import check_collection_name, check_dataset_type_name
from rc2_platform.errors import (
    ConflictingDefinitionError,
    GraphError,
    MissingCollectionError,
)
from rc2_platform.graph import _prereq
from rc2_platform.graph._report import BuildReport
from rc2_platform.graph.io import output_ref
from rc2_platform.graph.model import Quantum, QuantumGraph, TaskSummary
from rc2_platform.graph.quantum_assembly import QuantumAssembler
from rc2_platform.graph.task_plan import Key, TaskPlan, connections_of, key_getter, plan_task
from rc2_platform.pipeline.connections import ConnectionKind, LookupKind
from rc2_platform.pipeline.graph import PipelineGraph
from rc2_platform.pipeline.task_def import TaskDef
from rc2_platform.registry.registry import Registry

ProgressCallback = Callable[[str], None]

__all__ = ["QuantumGraphBuilder", "build_quantum_graph"]


class QuantumGraphBuilder:
    """Build the QuantumGraph of a pipeline over a data query.

    Parameters
    ----------
    butler_or_registry : Butler or Registry
        Where inputs are looked up (only read).
    pipeline_graph : PipelineGraph or Pipeline
        The tasks to plan, in topological order.
    input_collections : sequence of str
        Collections searched for inputs, in order (first match wins).
    output_run : str
        The RUN collection the outputs will be written to.
    where : str
        Where-expression constraining the data IDs, e.g. ``"skymap = 'rings' AND tract = 9615"``.
    bind : mapping, optional
        Values of ``:name`` placeholders in ``where``.
    skip_existing_in : sequence of str
        Quanta whose outputs all exist in these collections are skipped; their existing
        outputs feed downstream quanta.
    clobber : bool
        Keep quanta whose outputs partly exist in the output run (the executor replaces them).
    extend_run : bool
        Allow adding quanta to an existing output run.
    progress : callable, optional
        Called with a short phase description as the build proceeds.
    pipeline_source : str, optional
        Where the pipeline came from, recorded in the graph metadata.
    """

    def __init__(
        self,
        butler_or_registry: Any,
        pipeline_graph: Any,
        input_collections: Sequence[str],
        output_run: str,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        skip_existing_in: Sequence[str] = (),
        clobber: bool = False,
        extend_run: bool = False,
        *,
        progress: ProgressCallback | None = None,
        pipeline_source: str | None = None,
    ) -> None:
        self.registry: Registry = getattr(butler_or_registry, "registry", butler_or_registry)
        if hasattr(pipeline_graph, "to_graph"):
            pipeline_source = pipeline_source or getattr(pipeline_graph, "source", None)
            pipeline_graph = pipeline_graph.to_graph()
        if not isinstance(pipeline_graph, PipelineGraph):
            raise GraphError(f"expected a Pipeline or PipelineGraph, got {type(pipeline_graph)}")
        if isinstance(input_collections, str):
            input_collections = [input_collections]
        if not input_collections:
            raise GraphError("no input collections given; pass --input COLLECTION")
        check_collection_name(output_run, "output RUN", where="--output")
        self.pipeline = pipeline_graph
        self.input_collections = list(input_collections)
        self.output_run = output_run
        self.where = where
        self.bind = dict(bind or {})
        self.skip_existing_in = (
            [skip_existing_in] if isinstance(skip_existing_in, str) else list(skip_existing_in)
        )
        self.clobber = clobber
        self.extend_run = extend_run
        self.pipeline_source = pipeline_source
        self.universe = self.registry.universe
        self.report = BuildReport()
        self._progress = progress or (lambda _msg: None)
        self._types: dict[str, DatasetType] = {
            name: node.dataset_type for name, node in self.pipeline.dataset_types.items()
        }
        self._registered: dict[str, DatasetType] = {}

    # --- public -------------------------------------------------------------------------

    def build(self) -> QuantumGraph:
        """Run the queries and assemble the graph.

        Raises
        ------
        ConflictingDefinitionError
            A dataset type of the pipeline is registered with another definition.
        GraphError
            Missing overall input types, outputs already in the output run without
            ``extend_run``/``clobber``/``skip_existing_in``, or inconsistent connections.
        """
        started = datetime.datetime.now(datetime.UTC)
        self._check_output_run()
        self._progress("checking dataset types")
        self._check_dataset_types()
        self._progress("refreshing planner statistics")
        self.registry.refresh_statistics()
        self._progress("querying data IDs")
        names, rows = self._query_rows()
        self._progress(f"planning quanta from {len(rows)} data ID rows")
        plans = [plan_task(self.universe, task, names, rows) for task in self.pipeline.tasks]
        self._progress("finding overall inputs")
        available = self._find_overall_inputs(plans)
        self._progress("finding prerequisites")
        for plan in plans:
            self._find_prerequisites(plan)
        self._progress("checking existing outputs")
        skip_refs, run_refs = self._find_existing_outputs(plans)
        self._progress("assembling quanta")
        assembler = QuantumAssembler(
            self.pipeline,
            self._types,
            self.output_run,
            self.report,
            skip_existing_in=self.skip_existing_in,
            clobber=self.clobber,
            extend_run=self.extend_run,
        )
        quanta: list[Quantum] = []
        for plan in plans:
            assembler.assemble(plan, available, skip_refs, run_refs, quanta)
        if not quanta and not any(self.report.skipped.values()):
            self._fail_empty(len(rows))
        graph = QuantumGraph(
            [self._summary(t) for t in self.pipeline.tasks],
            quanta,
            output_run=self.output_run,
            input_collections=self.input_collections,
            init_outputs=self._init_outputs(),
            metadata=self._metadata(started),
        )
        graph.metadata["counts"] = graph.counts_by_task()
        return graph

    # --- checks -------------------------------------------------------------------------

    def _check_dataset_types(self) -> None:
        for name in self._types:
            check_dataset_type_name(name, where="the pipeline")
        self._registered = {dt.name: dt for dt in self.registry.query_dataset_types()}
        for name, ours in self._types.items():
            theirs = self._registered.get(name)
            if theirs is not None and not theirs.same_definition(ours):
                users = sorted(
                    {
                        t.label
                        for t in self.pipeline.tasks
                        for c in t.connections.values()
                        if c.dataset_type_name == name
                    }
                )
                raise ConflictingDefinitionError(
                    f"dataset type {name!r} is registered as {_describe(theirs)} but the "
                    f"pipeline (tasks {users}) defines it as {_describe(ours)}; rename the "
                    "pipeline's dataset type or use a repository where they agree"
                )
        for name in self._overall_regular_inputs():
            if name not in self._registered:
                raise GraphError(
                    f"overall input dataset type {name!r} is not registered in the repository; "
                    f"ingest {name} datasets first (nothing to build a graph from)"
                )

    def _check_output_run(self) -> None:
        try:
            kind = self.registry.get_collection_type(self.output_run)
        except MissingCollectionError:
            self._run_exists = False
            if self.extend_run:
                raise GraphError(
                    f"--extend-run was given but output run {self.output_run!r} does not exist; "
                    "drop --extend-run to create it"
                ) from None
            return
        if kind is not CollectionType.RUN:
            raise GraphError(
                f"output RUN {self.output_run!r} (--output) is an existing {kind.name} "
                "collection, not a RUN; outputs can only be written to a RUN: choose a new name"
            )
        self._run_exists = True

    def _overall_regular_inputs(self) -> list[str]:
        return [
            name
            for name in self.pipeline.overall_inputs
            if not self.pipeline.dataset_types[name].is_prerequisite
            and not self.pipeline.dataset_types[name].is_init
        ]

    # --- step 1: the big query (step 2, its projections: task_plan.plan_task) ---------

    def _query_rows(self) -> tuple[tuple[str, ...], list[Key]]:
        dims: set[str] = set()
        for task in self.pipeline.tasks:
            dims.update(task.dimensions)
            for conn in connections_of(task, ConnectionKind.INPUT, ConnectionKind.OUTPUT):
                dims.update(conn.dimensions)
        inputs = [
            self._registered[n] for n in self._overall_regular_inputs() if self._types[n].dimensions
        ]
        names, rows = self.registry.query_data_id_rows(
            dims, self.where, self.bind, datasets=inputs, collections=self.input_collections
        )
        return tuple(names), rows

    # --- step 3: overall inputs ---------------------------------------------------------

    def _find_overall_inputs(self, plans: list[TaskPlan]) -> dict[str, dict[Key, DatasetRef]]:
        needed: dict[str, set[Key]] = defaultdict(set)
        overall = set(self._overall_regular_inputs())
        for plan in plans:
            for conn in connections_of(plan.task, ConnectionKind.INPUT):
                if conn.dataset_type_name in overall:
                    for entry in plan.quanta.values():
                        needed[conn.dataset_type_name].update(entry[conn.name])
        available: dict[str, dict[Key, DatasetRef]] = defaultdict(dict)
        for name, keys in needed.items():
            dt = self._registered[name]
            coords = [DataCoordinate(dt.dimensions, k) for k in keys]
            found = self.registry.find_datasets(dt, self.input_collections, coords)
            available[name] = {c.values_tuple: ref for c, ref in found.items()}
        return available

    # --- step 4: prerequisites ----------------------------------------------------------

    def _find_prerequisites(self, plan: TaskPlan) -> None:
        conns = connections_of(plan.task, ConnectionKind.PREREQUISITE_INPUT)
        if not conns or not plan.quanta:
            return
        timespans = None
        for conn in conns:
            dt = self._registered.get(conn.dataset_type_name)
            lookup = getattr(conn, "lookup", LookupKind.PLAIN)
            if dt is None:
                reason = f"dataset type {conn.dataset_type_name} is not registered"
                plan.prereqs[conn.name] = {k: _prereq.Lookup((), reason, "") for k in plan.quanta}
                continue
            if lookup is LookupKind.CALIBRATION:
                if timespans is None:
                    timespans = _prereq.quantum_timespans(self.registry, plan.qdims, plan.quanta)
                found = _prereq.find_calibrations(
                    self.registry, dt, self.input_collections, plan.qdims, timespans
                )
            elif lookup is LookupKind.SPATIAL:
                found = _prereq.find_spatial(
                    self.registry, dt, self.input_collections, plan.qdims, plan.quanta
                )
            else:
                found = _prereq.find_plain(
                    self.registry, dt, self.input_collections, plan.qdims, plan.quanta
                )
            plan.prereqs[conn.name] = found

    # --- step 7 (lookups): existing outputs ---------------------------------------------

    def _find_existing_outputs(
        self, plans: list[TaskPlan]
    ) -> tuple[dict[str, dict[Key, DatasetRef]], dict[str, dict[Key, DatasetRef]]]:
        wanted: dict[str, set[Key]] = defaultdict(set)
        for plan in plans:
            for conn in connections_of(plan.task, ConnectionKind.OUTPUT):
                if conn.dataset_type_name not in self._registered:
                    continue
                get = key_getter([plan.qdims.index(d) for d in conn.dimensions])
                wanted[conn.dataset_type_name].update(map(get, plan.quanta))
        skip = self._existing(wanted, self.skip_existing_in) if self.skip_existing_in else {}
        if not self._run_exists:
            return skip, {}
        if self.skip_existing_in == [self.output_run]:
            return skip, skip
        return skip, self._existing(wanted, [self.output_run])

    def _existing(
        self, wanted: Mapping[str, set[Key]], collections: list[str]
    ) -> dict[str, dict[Key, DatasetRef]]:
        out: dict[str, dict[Key, DatasetRef]] = {}
        for name, keys in wanted.items():
            dt = self._registered[name]
            coords = [DataCoordinate(dt.dimensions, k) for k in keys]
            found = self.registry.find_datasets(dt, collections, coords) if coords else {}
            out[name] = {c.values_tuple: r for c, r in found.items()}
        return out

    # --- an empty graph -----------------------------------------------------------------

    def _fail_empty(self, n_rows: int) -> None:
        if n_rows == 0:
            raise GraphError(
                f"no data IDs match where {self.where!r} with the pipeline's inputs "
                f"{self._overall_regular_inputs()} in collections {self.input_collections}; "
                "check the where-expression and the input collections"
            )
        first = next(iter(self.pipeline.labels))
        reasons = "; ".join(
            f"{n} x {reason}" for reason, n in list(self.report.pruned.get(first, {}).items())[:3]
        )
        raise GraphError(
            f"the graph has no quanta: all {first} quanta were pruned ({reasons}); "
            f"check that input collections {self.input_collections} hold those datasets"
        )

    # --- graph-level pieces -------------------------------------------------------------

    def _summary(self, task: TaskDef) -> TaskSummary:
        config = task.config.model_dump(mode="json") if hasattr(task.config, "model_dump") else {}
        return TaskSummary(
            task.label,
            task.task_class_name,
            task.dimensions,
            config,
            self.pipeline.step_of(task.label),
        )

    def _init_outputs(self) -> dict[str, list[DatasetRef]]:
        empty = DataCoordinate((), ())
        return {
            task.label: [
                output_ref(self._types[c.dataset_type_name], empty, self.output_run)
                for c in connections_of(task, ConnectionKind.INIT_OUTPUT)
            ]
            for task in self.pipeline.tasks
        }

    def _metadata(self, started: datetime.datetime) -> dict[str, Any]:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        meta: dict[str, Any] = {
            "pipeline": self.pipeline_source,
            "tasks": list(self.pipeline.labels),
            "where": self.where,
            "bind": {
                k: v if isinstance(v, (int, float, str)) else list(v) for k, v in self.bind.items()
            },
            "input_collections": self.input_collections,
            "output_run": self.output_run,
            "skip_existing_in": self.skip_existing_in,
            "clobber": self.clobber,
            "extend_run": self.extend_run,
            "user": user,
            "created": started.isoformat(),
        }
        meta.update(self.report.to_metadata())
        return meta


def _describe(dt: DatasetType) -> str:
    cal = ", calibration" if dt.is_calibration else ""
    return f"{dt.name}({', '.join(dt.dimensions)}) [{dt.storage_class}{cal}]"


def build_quantum_graph(
    butler_or_registry: Any,
    pipeline: Any,
    input_collections: Sequence[str],
    output_run: str,
    where: str = "",
    **kwargs: Any,
) -> QuantumGraph:
    """Shortcut for ``QuantumGraphBuilder(...).build()`` (same arguments)."""
    return QuantumGraphBuilder(
        butler_or_registry, pipeline, input_collections, output_run, where, **kwargs
    ).build()
