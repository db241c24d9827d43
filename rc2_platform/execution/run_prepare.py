"""What :meth:`RunState.prepare <rc2_platform.execution.run_state.RunState.prepare>` checks
and writes before a graph's first job: its inputs, a RUN that already holds its outputs,
its init-outputs, and (resuming) the quanta whose outputs are all registered.

Functions of the graph and the repository only; the run-state machine calls them and
keeps the states and the journal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rc2_platform.butler import Butler
from rc2_platform.errors import MissingCollectionError, MissingInputsError, RunConflictError
from rc2_platform.execution.executor import PreparedTask
from rc2_platform.execution.registration import registered_output_ids
from rc2_platform.graph.model import QuantumGraph
from rc2_platform.pipeline import CONFIG_CONNECTION, ConnectionKind

__all__ = ["check_fresh", "check_inputs", "registered_quanta", "write_init_outputs"]


def check_inputs(graph: QuantumGraph, graph_path: Path, butler: Butler) -> dict[Any, Any]:
    """The datastore records of the graph's overall inputs (``{id: record}``).

    Raises
    ------
    MissingInputsError
        If some overall input has no file record in the repository (nothing is written).
    """
    overall = {r.id: r for q in graph.quanta for r in q.all_inputs() if r.id not in graph.producers}
    records = butler.datastore_records(overall.values())
    missing = [r for i, r in overall.items() if i not in records]
    if missing:
        example = missing[0]
        raise MissingInputsError(
            f"{len(missing)} of the {len(overall)} inputs of graph {graph_path} are not "
            f"in repository {butler.root} (e.g. {example.dataset_type.name} "
            f"{dict(example.data_id.to_dict())} in {example.run!r}, id {example.id}); "
            "nothing was registered: run the graph against the repository it was built "
            "from, or rebuild it with `rc2 qgraph build` here"
        )
    return records


def check_fresh(graph: QuantumGraph, butler: Butler, *, earlier: bool) -> None:
    """Refuse to run into a RUN that already holds this graph's outputs.

    Parameters
    ----------
    graph : QuantumGraph
        The graph.
    butler : Butler
        The repository.
    earlier : bool
        The RUN's journal already has a ``run_started`` event (an earlier execution).

    Raises
    ------
    RunConflictError
        If the RUN exists and holds outputs of the graph, or was executed before.
    """
    run = graph.output_run
    try:
        butler.registry.get_collection_type(run)
    except MissingCollectionError:
        return
    refs = [r for q in graph.quanta for r in q.all_outputs()]
    refs += [r for rs in graph.init_outputs.values() for r in rs]
    existing = registered_output_ids(butler, refs)
    if existing or earlier:
        what = f"{len(existing)} outputs of this graph" if existing else "an earlier execution"
        raise RunConflictError(
            f"RUN {run!r} already holds {what}; add --resume to finish it (quanta "
            "whose outputs exist are skipped), --extend-run to add this graph's outputs "
            f"to it, or remove it first (`rc2 collections remove {butler.root} {run}`)"
        )


def write_init_outputs(graph: QuantumGraph, butler: Butler) -> None:
    """Write and register the init-outputs (``{label}_config`` ...) not registered yet."""
    refs = [r for rs in graph.init_outputs.values() for r in rs]
    if not refs:
        return
    existing = registered_output_ids(butler, refs)
    stored = []
    for label, label_refs in graph.init_outputs.items():
        todo = [r for r in label_refs if r.id not in existing]
        if not todo:
            continue
        prepared = PreparedTask(graph.task(label))
        names = {
            c.dataset_type_name: n
            for n, c in prepared.connections.items()
            if c.kind is ConnectionKind.INIT_OUTPUT
        }
        instance = prepared.make()
        for ref in todo:
            conn = names.get(ref.dataset_type.name)
            if ref.dataset_type.name == f"{label}_config" or conn == CONFIG_CONNECTION:
                obj: Any = prepared.config.model_dump(mode="json")
            else:
                obj = getattr(instance, conn or "", None)
                if obj is None:
                    obj = {"note": f"task {label!r} provides no object for {conn!r}"}
            stored.append((ref, butler.datastore.put(obj, ref, overwrite=True)))
    butler.register_outputs(stored)


def registered_quanta(graph: QuantumGraph, butler: Butler) -> list[int]:
    """Indexes of the quanta whose outputs are all registered (one set-based lookup)."""
    refs = (r for q in graph.quanta for r in q.all_outputs())
    existing = registered_output_ids(butler, refs)
    return [q.index for q in graph.quanta if all(r.id in existing for r in q.all_outputs())]
