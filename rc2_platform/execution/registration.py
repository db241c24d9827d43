"""Registering what workers wrote: one registry transaction per finished job.

Workers never touch the registry. When a job finishes, the orchestrator reads its
result file and registers the outputs of the *succeeded* quanta (their dataset rows and
datastore records) with :meth:`Butler.register_outputs`, in one transaction.
Failed or blocked quanta register nothing; a job without a result file registers nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from rc2_platform.butler import Butler
from rc2_platform.core.dataset_types import DatasetRef
from rc2_platform.datastore import DatastoreRecord
from rc2_platform.errors import ClusterJobError
from rc2_platform.execution.executor import QuantumOutcome
from rc2_platform.execution.quantum_state import QuantumState
from rc2_platform.graph.model import QuantumGraph

if TYPE_CHECKING:
    from rc2_platform.execution.run_state import RunState, Settlement

__all__ = [
    "output_refs_by_id",
    "register_outcomes",
    "register_settlement",
    "registered_output_ids",
]


def output_refs_by_id(graph: QuantumGraph) -> dict[uuid.UUID, DatasetRef]:
    """Every output ref of every quantum, by dataset UUID."""
    return {ref.id: ref for q in graph.quanta for ref in q.all_outputs()}


def register_outcomes(
    butler: Butler,
    outcomes: Iterable[QuantumOutcome],
    refs_by_id: Mapping[uuid.UUID, DatasetRef],
) -> int:
    """Register the outputs of the succeeded outcomes in one transaction.

    Returns
    -------
    int
        Number of datasets newly registered (already registered ones are skipped).

    Raises
    ------
    ClusterJobError
        If a result names a dataset the graph does not write (a result file of another
        graph).
    """
    stored: list[tuple[DatasetRef, DatastoreRecord]] = []
    for outcome in outcomes:
        if outcome.status is not QuantumState.SUCCEEDED:
            continue
        for record in outcome.records:
            ref = refs_by_id.get(record.dataset_id)
            if ref is None:
                raise ClusterJobError(
                    f"job result of quantum {outcome.task_label} {outcome.data_id} names dataset "
                    f"{record.dataset_id}, which this graph does not write; was the result file "
                    "written for another graph?"
                )
            stored.append((ref, record))
    return butler.register_outputs(stored)


def registered_output_ids(butler: Butler, refs: Iterable[DatasetRef]) -> set[uuid.UUID]:
    """Which of ``refs`` are registered with a file record (set-based, 5,000 ids per query)."""
    return set(butler.datastore_records(refs))


def register_settlement(butler: Butler, state: RunState, settlement: Settlement) -> int:
    """Register the outputs of a settled attempt's succeeded quanta; journal the count."""
    registered = register_outcomes(butler, settlement.outcomes, state.output_refs)
    state.journal.append(
        "outputs_registered",
        cluster=settlement.attempt.cluster,
        attempt=settlement.attempt.attempt,
        registered=registered,
    )
    return registered
