"""The whole-graph step of the execution job (``driver: graph``, the default on ``local``).

One ``run_<first stage>`` step drives every tract of the run to its end with ``rc2 run``'s
loop and local pool (:func:`rc2_platform.execution.whole_graph.run_graphs`): a cluster
job starts as soon as the clusters it reads from are done, so there are no stage
barriers and no per-cluster step start-up. As each cluster ends the step logs it (its
counts, one error line per failed quantum naming task, data ID, exception and attempt;
clusters left with only blocked quanta as warnings); at the end it yields the outcomes
(the later planning steps and ``materialize_outputs`` read them) and then fails, naming
every failed quantum, if any quantum failed for good. "Re-execute from failure"
re-runs this step, which skips every quantum whose outputs are registered in the RUN.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
from dataclasses import dataclass
from typing import Any

import dagster as dg

from rc2_platform.execution.execution_config import ExecutionConfig, load_execution_config
from rc2_platform.execution.run_state import QuantumState
from rc2_platform.execution.runner import RunOptions
from rc2_platform.execution.stages import ClusterOutcome, Ledger
from rc2_platform.execution.whole_graph import run_graphs
from rc2_platform.monitor.checks import warm_validation_imports
from rc2_platform.monitor.outputs import failure_line, mapping_key

__all__ = [
    "GraphItem",
    "fork_in_step",
    "graph_mapping_key",
    "graph_output",
    "log_outcome",
    "run_whole_graphs",
]


@dataclass(frozen=True)
class GraphItem:
    """What the first planning step hands the whole-graph step (plain, picklable)."""

    config_path: str | None
    processes: int | None
    #: Cluster jobs at once; None = the local backend's ``max_workers``.
    jobs: int | None
    ledgers: tuple[Ledger, ...]


def graph_mapping_key(ledgers: tuple[Ledger, ...]) -> str:
    """``t<tract>_whole_graph`` (``..._and_N_more_tracts`` for several)."""
    key = mapping_key(ledgers[0].tract, "whole_graph")
    return key if len(ledgers) == 1 else f"{key}_and_{len(ledgers) - 1}_more_tracts"


def graph_output(
    context: dg.OpExecutionContext, stage: str, item: GraphItem
) -> dg.DynamicOutput[GraphItem]:
    """The first planning step's one fan-out (``driver: graph``): the whole-graph step."""
    context.log.info(f"{stage}: every stage's cluster jobs in one whole-graph step")
    return dg.DynamicOutput(
        item, mapping_key=graph_mapping_key(item.ledgers), output_name="clusters"
    )


def log_outcome(
    context: dg.OpExecutionContext, outcome: ClusterOutcome, reports: list[dict[str, Any]]
) -> None:
    """Log one cluster's end: skipped quanta, counts, one error line per failed quantum."""
    counts = json.dumps(outcome.counts(), sort_keys=True)
    if outcome.attempts == 0:  # did not run (whole-graph step): blocked, or done before
        if outcome.counts().get(QuantumState.BLOCKED.value):
            context.log.warning(
                f"tract {outcome.tract} cluster {outcome.cluster} ({outcome.stage}): {counts}: "
                "blocked by upstream failures, not run"
            )
        return
    if outcome.skipped:
        context.log.info(
            f"cluster {outcome.cluster}: {outcome.skipped} quanta already done in the RUN: skipped"
        )
    context.log.info(f"cluster {outcome.cluster}: {counts} in {outcome.attempts} attempt(s)")
    for failure in outcome.failures:
        context.log.error(f"cluster {outcome.cluster}: {failure_line(failure)}")
    for report in reports:
        context.log.debug(f"worker report: {json.dumps(report, sort_keys=True)}")


def fork_in_step(config: ExecutionConfig) -> ExecutionConfig:
    """Local jobs forked from the step process itself when the step is a subprocess.

    ``rc2_executor``'s multiprocess steps are forks of a server that preloaded the job
    modules; a ``forkserver`` launcher would start (and import into) another server in
    every step. In process (the run worker, e.g. the whole-graph step) the launcher is kept.

    Only from the step's main thread: a step process already runs Dagster's threads
    (``QueueFeederThread``, ``termination-handler``), which hold only their own queue and
    event locks, none of which a forked job takes (it replaces its stdio and opens its own
    butler). A batched step's cluster threads (``cluster_jobs_per_step`` > 1) keep the
    ``forkserver`` launcher: their jobs fork from a server started by fork + exec, not
    from a process whose sibling threads may hold any lock mid-registration.
    """
    local = config.backends.local
    if local.launcher != "forkserver" or multiprocessing.parent_process() is None:
        return config
    if threading.current_thread() is not threading.main_thread():
        return config
    backends = config.backends.model_copy(
        update={"local": local.model_copy(update={"launcher": "fork"})}
    )
    return config.model_copy(update={"backends": backends})


def run_whole_graphs(context: dg.OpExecutionContext, item: GraphItem) -> list[ClusterOutcome]:
    """Run the item's graphs to their end, logging each cluster as it ends."""
    config = fork_in_step(load_execution_config(item.config_path))
    if config.backends.local.launcher != "fork":  # jobs come from a fork server: no fork here
        warm_validation_imports()  # materialize_outputs' checks validate after the last job
    options = RunOptions(backend="local", processes=item.processes, jobs=item.jobs)
    result = run_graphs(
        item.ledgers, config, options=options, on_cluster=lambda o: log_outcome(context, o, [])
    )
    for tract, n in result.skipped.items():
        if n:
            context.log.info(f"tract {tract}: {n} quanta already done in the RUN: skipped")
    for tract, status in result.status.items():
        context.log.info(f"tract {tract}: graph {status.value}")
    return result.outcomes
