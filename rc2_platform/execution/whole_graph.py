"""Whole graphs in one call with ``rc2 run``'s loop, reporting each cluster as it ends.

What the Dagster execution job's default (``driver: graph``) runs in one step: the
ledgers :func:`~.stages.prepare_run` returned (one per tract) are driven to their end by
:func:`~.runner.drive` — the same loop and local pool as ``rc2 run`` (a cluster is
submitted as soon as the clusters it reads from have finished, no stage barriers; retries,
memory escalation, registration in batches) — and every cluster is reported through
``on_cluster`` as a :class:`~.stages.ClusterOutcome`: a cluster that ran the moment it is
final (with its final failures: task, data ID, exception, attempt), the others (left with
only blocked quanta, or found done in the RUN: ``attempts == 0``) at the end, so the
outcomes hold the final state of every quantum. Quanta whose outputs are already registered
in the RUN (a re-execution, a resumed RUN) are not run again.

Nothing here imports Dagster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from rc2_platform.butler import Butler
from rc2_platform.execution.backends import make_backend
from rc2_platform.execution.execution_config import ExecutionConfig
from rc2_platform.execution.run_state import QuantumState, RunState, RunStatus, Settlement
from rc2_platform.execution.runner import RunOptions, drive
from rc2_platform.execution.stages import (
    ClusterOutcome,
    Ledger,
    done_in_registry,
    load_run_state,
)

__all__ = ["GraphsOutcome", "run_graphs"]


class GraphsOutcome:
    """What :func:`run_graphs` returns: every cluster outcome, statuses, skipped quanta."""

    def __init__(self) -> None:
        self.outcomes: list[ClusterOutcome] = []
        #: Tract -> final status of its graph (``succeeded``, ``failed``, ``cancelled``).
        self.status: dict[str, RunStatus] = {}
        #: Tract -> quanta found done in the RUN before anything ran (not run again).
        self.skipped: dict[str, int] = {}

    @property
    def failed(self) -> list[ClusterOutcome]:
        """Outcomes of clusters with a quantum that failed for good."""
        return [o for o in self.outcomes if o.failed]


class _Tracker:
    """Turns settlements into one :class:`ClusterOutcome` per final cluster."""

    def __init__(
        self,
        tracts: dict[int, str],
        on_cluster: Callable[[ClusterOutcome], None] | None,
        result: GraphsOutcome,
    ) -> None:
        self.tracts, self.on_cluster, self.result = tracts, on_cluster, result
        self.start: dict[tuple[int, str], float] = {}
        self.attempts: dict[tuple[int, str], int] = {}
        self.errors: dict[tuple[int, str], dict[str, int]] = {}
        self.failures: dict[tuple[int, str], list[dict[str, Any]]] = {}
        #: Per state: quanta found done in the RUN before anything ran.
        self.done: dict[int, set[int]] = {}

    def settled(self, state: RunState, settlement: Settlement) -> None:
        key = (id(state), settlement.attempt.cluster)
        self.start.setdefault(key, time.time())
        self.attempts[key] = self.attempts.get(key, 0) + 1
        errors = self.errors.setdefault(key, {})
        for text, n in settlement.errors().items():
            errors[text] = errors.get(text, 0) + n
        self.failures.setdefault(key, []).extend(settlement.final_failures())
        if settlement.retry is None:
            self.emit(state, settlement.attempt.cluster)

    def emit(self, state: RunState, cluster: str) -> None:
        key = (id(state), cluster)
        members = state.plan.clusters[cluster]
        outcome = ClusterOutcome(
            self.tracts[id(state)],
            cluster,
            state.plan.stage[cluster],
            {i: state.states.get(i, QuantumState.BLOCKED) for i in members},
            0,
            self.attempts.get(key, 0),
            round(time.time() - self.start.get(key, time.time()), 3),
            self.errors.get(key, {}),
            self.failures.get(key, []),
            sum(1 for i in members if i in self.done.get(id(state), ())),
        )
        self.result.outcomes.append(outcome)
        if self.on_cluster is not None:
            self.on_cluster(outcome)


def run_graphs(
    ledgers: Sequence[Ledger],
    config: ExecutionConfig,
    *,
    options: RunOptions | None = None,
    on_cluster: Callable[[ClusterOutcome], None] | None = None,
) -> GraphsOutcome:
    """Run every quantum of the ledgers' graphs still to do, all at once on one backend.

    Parameters
    ----------
    ledgers : sequence of Ledger
        From :func:`~.stages.prepare_run` (same repository); updated in place with the
        final state of every quantum.
    config : ExecutionConfig
        Resources, retries, the local backend (``options.jobs`` overrides its
        ``max_workers``).
    options : RunOptions, optional
        ``backend`` (``local`` by default), ``jobs``, ``processes``, ``executable``.
    on_cluster : callable, optional
        Called with each cluster's outcome as soon as the cluster ran to its end (after
        its retries); at the end for the clusters that did not run (``attempts == 0``).

    Returns
    -------
    GraphsOutcome
        One outcome per cluster of every graph (those that ran in the order they
        ended), each graph's status, and the quanta found already done.
    """
    options = options or RunOptions()
    if options.jobs is not None:
        local = config.backends.local.model_copy(update={"max_workers": options.jobs})
        config = config.model_copy(
            update={"backends": config.backends.model_copy(update={"local": local})}
        )
    backend = make_backend(config, options.backend)
    result = GraphsOutcome()
    if not ledgers:
        return result
    states: list[RunState] = []
    done_before: list[set[int]] = []
    for ledger in ledgers:
        state = load_run_state(ledger.repo, ledger.graph_path, config, backend.name, options)
        state.absorb(ledger.states)
        done = done_in_registry(state, state.plan.clusters)
        state.absorb(done)
        result.skipped[ledger.tract] = len(done)
        states.append(state)
        done_before.append(set(done))
    tracker = _Tracker(
        {id(s): ledger.tract for s, ledger in zip(states, ledgers, strict=True)}, on_cluster, result
    )
    tracker.done = {id(s): d for s, d in zip(states, done_before, strict=True)}
    with Butler(ledgers[0].repo) as butler:
        statuses = drive(states, backend, butler, options, tracker.settled)
    for state, ledger, status in zip(states, ledgers, statuses, strict=True):
        result.status[ledger.tract] = status
        reported = {o.cluster for o in result.outcomes if o.tract == ledger.tract}
        for name in state.plan.clusters:
            if name not in reported:  # wholly blocked, or done before
                tracker.emit(state, name)
        ledger.states.update(state.final_states())
    return result
