"""Turning task plans into quanta: resolve inputs, prune, skip, name outputs (in memory).

Steps 5 and 6 of the builder's algorithm (see :mod:`rc2_platform.graph.builder`): tasks
are assembled in pipeline order, so a quantum whose inputs are missing is pruned and the
pruning propagates downstream (the reasons go to the :class:`BuildReport`); quanta whose
outputs all exist in ``skip_existing_in`` are skipped and their outputs feed downstream
quanta; the others get deterministic output refs in the output run (:func:`output_ref`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import DatasetRef, DatasetType
from rc2_platform.errors import GraphError
from rc2_platform.graph._report import BuildReport
from rc2_platform.graph.io import output_ref
from rc2_platform.graph.model import Quantum
from rc2_platform.graph.task_plan import Key, TaskPlan, connections_of, key_getter, sorted_keys
from rc2_platform.pipeline.connections import BaseConnection, ConnectionKind
from rc2_platform.pipeline.graph import PipelineGraph

__all__ = ["QuantumAssembler"]


class QuantumAssembler:
    """Assemble the quanta of task plans, in pipeline order, into one list.

    Parameters
    ----------
    pipeline : PipelineGraph
        The pipeline planned (names the producer of a missing input in prune reasons).
    types : mapping of str to DatasetType
        The pipeline's dataset types by name (outputs get refs of these).
    output_run : str
        The RUN collection the outputs will be written to.
    report : BuildReport
        Where pruned, skipped and clobbered quanta are counted.
    skip_existing_in : sequence of str
        Collections whose existing outputs make a quantum skipped (empty: none).
    clobber : bool
        Keep quanta whose outputs partly exist in the output run.
    extend_run : bool
        Adding quanta to an existing output run is allowed (changes the clash message).
    """

    def __init__(
        self,
        pipeline: PipelineGraph,
        types: Mapping[str, DatasetType],
        output_run: str,
        report: BuildReport,
        *,
        skip_existing_in: Sequence[str] = (),
        clobber: bool = False,
        extend_run: bool = False,
    ) -> None:
        self.pipeline = pipeline
        self.types = types
        self.output_run = output_run
        self.report = report
        self.skip_existing_in = list(skip_existing_in)
        self.clobber = clobber
        self.extend_run = extend_run

    def assemble(
        self,
        plan: TaskPlan,
        available: dict[str, dict[Key, DatasetRef]],
        skip_refs: Mapping[str, Mapping[Key, DatasetRef]],
        run_refs: Mapping[str, Mapping[Key, DatasetRef]],
        quanta: list[Quantum],
    ) -> None:
        """Append the quanta of one task plan to ``quanta``.

        Parameters
        ----------
        plan : TaskPlan
            The task's candidate quanta, with their prerequisites looked up.
        available : dict
            Dataset type name -> key -> ref of every dataset an input may use: the
            overall inputs found, and (updated here) the outputs of earlier quanta.
        skip_refs : mapping
            Outputs existing in ``skip_existing_in``, by dataset type name and key.
        run_refs : mapping
            Outputs existing in the output run, by dataset type name and key.
        quanta : list of Quantum
            The graph's quanta so far; new ones are numbered after them.

        Raises
        ------
        GraphError
            An input connection taking one dataset matches several, or a quantum would
            overwrite outputs in the output run without ``clobber``.
        """
        task = plan.task
        label = task.label
        data_id_get = key_getter([plan.qdims.index(d) for d in task.dimensions])
        outputs = [
            (
                c,
                self.types[c.dataset_type_name],
                key_getter([plan.qdims.index(d) for d in c.dimensions]),
            )
            for c in connections_of(task, ConnectionKind.OUTPUT)
        ]
        inputs = connections_of(task, ConnectionKind.INPUT)
        for qkey in sorted_keys(plan.quanta):
            data_id = DataCoordinate(task.dimensions, data_id_get(qkey))
            resolved = self._resolve_inputs(plan, qkey, data_id, inputs, available)
            if resolved is None:
                continue
            out_keys = [(c, dt, get(qkey)) for c, dt, get in outputs]
            if self.skip_existing_in and all(
                k in skip_refs.get(dt.name, {}) for _, dt, k in out_keys
            ):
                self.report.skipped[label] += 1
                for _, dt, k in out_keys:
                    available[dt.name][k] = skip_refs[dt.name][k]
                continue
            clashes = [(dt.name, k) for _, dt, k in out_keys if k in run_refs.get(dt.name, {})]
            if clashes:
                self._output_clash(label, data_id, clashes)
            outs: dict[str, tuple[DatasetRef, ...]] = {}
            for c, dt, k in out_keys:
                ref = output_ref(dt, DataCoordinate(dt.dimensions, k), self.output_run)
                outs[c.name] = (ref,)
                available[dt.name][k] = ref
            quanta.append(Quantum(len(quanta), label, data_id, resolved, outs))

    def _resolve_inputs(
        self,
        plan: TaskPlan,
        qkey: Key,
        data_id: DataCoordinate,
        inputs: list[BaseConnection],
        available: Mapping[str, Mapping[Key, DatasetRef]],
    ) -> dict[str, tuple[DatasetRef, ...]] | None:
        label = plan.task.label
        resolved: dict[str, tuple[DatasetRef, ...]] = {}
        entry = plan.quanta[qkey]
        for conn in inputs:
            name = conn.dataset_type_name
            pool = available.get(name, {})
            refs = tuple(pool[k] for k in sorted_keys(entry[conn.name]) if k in pool)
            if len(refs) < conn.minimum:
                producer = self.pipeline.producers.get(name)
                reason = (
                    f"input {name} missing: the {producer} quanta producing it were pruned"
                    if producer is not None
                    else f"no {name} found in the input collections"
                )
                self.report.prune(label, reason, repr(data_id))
                return None
            if len(refs) > 1 and not conn.multiple:
                raise GraphError(
                    f"task {label!r} quantum {data_id}: connection {conn.name!r} ({name}) takes one "
                    f"dataset but {len(refs)} match: {[r.data_id for r in refs]}; make the "
                    "connection multiple or constrain the query"
                )
            resolved[conn.name] = refs
        for conn_name, lookups in plan.prereqs.items():
            conn = plan.task.connections[conn_name]
            found = lookups[qkey]
            if len(found.refs) < conn.minimum:
                self.report.prune(label, found.reason, f"{data_id}: {found.detail}")
                return None
            resolved[conn_name] = found.refs if conn.multiple else found.refs[:1]
        return resolved

    def _output_clash(
        self, label: str, data_id: DataCoordinate, clashes: list[tuple[str, Key]]
    ) -> None:
        if self.clobber:
            self.report.clobbered[label] += 1
            return
        names = sorted({n for n, _ in clashes})
        if not self.extend_run and not self.skip_existing_in:
            raise GraphError(
                f"output run {self.output_run!r} already holds outputs of this graph ({names} "
                f"of {label} {data_id}); pass --skip-existing-in {self.output_run} to resume, "
                "--clobber to replace them, or choose a new --output run"
            )
        raise GraphError(
            f"quantum {label} {data_id} would overwrite {names} that already exist in output "
            f"run {self.output_run!r} (its outputs are only partly there, so it cannot be "
            "skipped); pass --clobber to replace them"
        )
