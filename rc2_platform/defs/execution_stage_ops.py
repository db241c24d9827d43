"""The execution job's ``plan_<stage>`` / ``run_<stage>`` op pairs, one per stage.

``plan_<stage>`` folds the previous stage's outcomes into each tract's ledger and fans out
the stage's clusters (``driver: clusters``), or, for the first stage with ``driver:
graph``, ONE whole-graph item (:mod:`rc2_platform.defs.whole_graph_step`). ``run_<stage>``
runs its item: one cluster job (or a batch of them) on the configured backend — local
processes; HTCondor and Kubernetes through Dagster Pipes — registering outputs on this
side (:func:`rc2_platform.execution.stages.run_cluster_job`), or the whole graph.
"""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import dagster as dg

from rc2_platform.defs.execution_prepare import STAGES, ExecutionState, tag_tracts
from rc2_platform.defs.pipes_htcondor import PipesHTCondorClient
from rc2_platform.defs.resources import ButlerResource
from rc2_platform.defs.whole_graph_step import (
    GraphItem,
    fork_in_step,
    graph_output,
    log_outcome,
    run_whole_graphs,
)
from rc2_platform.execution.execution_config import load_execution_config
from rc2_platform.execution.run_state import QuantumState
from rc2_platform.execution.runner import RunOptions
from rc2_platform.execution.stages import (
    ClusterOutcome,
    ClusterSpec,
    plan_stage,
    record_outcomes,
    run_cluster_job,
)
from rc2_platform.monitor.outputs import failure_text, mapping_key

if TYPE_CHECKING:  # dagster_k8s and kubernetes load only when a Kubernetes step needs them
    from rc2_platform.defs.pipes_k8s import Rc2PipesK8sClient

__all__ = ["PLAN_OPS", "RUN_OPS", "make_plan_op", "make_run_op"]


def make_plan_op(stage: str, first: bool) -> dg.OpDefinition:
    """The ``plan_<stage>`` op: fold the previous outcomes in, fan out the stage's clusters.

    Parameters
    ----------
    stage : str
        The stage (a clustering rule of the execution config).
    first : bool
        The first stage: its op takes only the state (no previous outcomes) and, with
        ``driver: graph``, yields the whole-graph item.
    """
    ins = {"state": dg.In()} if first else {"state": dg.In(), "outcomes": dg.In()}

    @dg.op(
        name=f"plan_{stage}",
        ins=ins,
        out={"clusters": dg.DynamicOut(), "state": dg.Out()},
        description=f"Fold the previous stage's outcomes in; fan out the clusters of {stage}.",
    )
    def _plan(
        context: dg.OpExecutionContext,
        state: ExecutionState,
        outcomes: list[list[ClusterOutcome]] | None = None,
    ) -> Iterator[dg.Output[Any] | dg.DynamicOutput[Any]]:
        config = state.config()
        flat = [o for group in outcomes or [] for o in group]
        tag_tracts(context)
        if state.driver == "graph":
            for ledger in state.ledgers:
                record_outcomes(ledger, flat)
            if first and state.ledgers:
                item = GraphItem(state.config_path, state.processes, state.at_once or None,
                                 tuple(state.ledgers))  # fmt: skip
                yield graph_output(context, stage, item)
            else:
                context.log.info(f"{stage}: run by the whole-graph step")
            yield dg.Output(state, output_name="state")
            return
        n = 0
        for ledger in state.ledgers:
            record_outcomes(ledger, flat)
            blocked_before = ledger.counts()[QuantumState.BLOCKED]
            done_before = ledger.counts()[QuantumState.SUCCEEDED]
            specs = plan_stage(ledger, stage, config)
            done = ledger.counts()[QuantumState.SUCCEEDED] - done_before
            if done:
                context.log.info(
                    f"tract {ledger.tract} {stage}: {done} quanta already done in RUN "
                    f"{ledger.output_run} (registered outputs): skipped"
                )
            for i in range(0, len(specs), state.per_step):
                batch = tuple(specs[i : i + state.per_step])
                n += len(batch)
                key = mapping_key(batch[0].tract, batch[0].cluster)
                yield dg.DynamicOutput(
                    (state.backend, state.config_path, state.processes, batch, state.at_once),
                    mapping_key=key if len(batch) == 1 else f"{key}_and_{len(batch) - 1}_more",
                    output_name="clusters",
                )
            newly = ledger.counts()[QuantumState.BLOCKED] - blocked_before
            if newly:
                context.log.warning(
                    f"tract {ledger.tract} {stage}: {newly} quanta blocked by upstream failures"
                )
        context.log.info(f"{stage}: {n} cluster jobs")
        yield dg.Output(state, output_name="state")

    return _plan


def _run_spec(
    context: dg.OpExecutionContext,
    settings: tuple[str, str | None, int | None],
    spec: ClusterSpec,
    reports: list[dict[str, Any]],
) -> ClusterOutcome:
    backend, config_path, processes = settings
    config = load_execution_config(config_path)
    if backend == "local":
        config = fork_in_step(config)
    butler: ButlerResource = context.resources.butler
    extras = {"tract": spec.tract, "cluster": spec.cluster, "stage": spec.stage}
    options = RunOptions(backend=backend, processes=processes)
    launcher = None
    if backend == "htcondor":
        client: PipesHTCondorClient = context.resources.htcondor_pipes
        options.executable = client.worker_prefix()
        options.poll_seconds = client.poll_seconds
        launcher = client.launcher(context, config, extras, reports)
    elif backend == "kubernetes":
        k8s: Rc2PipesK8sClient = context.resources.k8s_pipes
        options.executable = k8s.worker_prefix()
        launcher = k8s.launcher(
            context, k8s.settings or config.backends.kubernetes, extras, reports
        )
    return run_cluster_job(
        butler.root, spec, config, launcher=launcher, options=options, backend_name=backend
    )


def _run_batch(context: dg.OpExecutionContext, item: Any) -> list[ClusterOutcome]:
    """Run the item's clusters (at once when several: the local backend's jobs are
    subprocesses, each thread waits for one) and log each outcome in this thread."""
    backend, config_path, processes, specs, at_once = item
    settings = (backend, config_path, processes)
    reports: list[list[dict[str, Any]]] = [[] for _ in specs]
    if len(specs) == 1:
        results = [_run_spec(context, settings, specs[0], reports[0])]
    else:
        with ThreadPoolExecutor(max_workers=min(len(specs), at_once or len(specs))) as pool:
            results = list(
                pool.map(
                    lambda i: _run_spec(context, settings, specs[i], reports[i]), range(len(specs))
                )
            )
    for outcome, spec_reports in zip(results, reports, strict=True):
        log_outcome(context, outcome, spec_reports)
    return results


def make_run_op(stage: str) -> dg.OpDefinition:
    """The ``run_<stage>`` op: run one fanned-out item (cluster jobs or the whole graph).

    It yields the outcomes first, then fails naming every failed quantum, if any.
    """

    @dg.op(
        name=f"run_{stage}",
        required_resource_keys={"butler", "htcondor_pipes", "k8s_pipes"},
        description=f"Run one cluster job of {stage} on the backend and register its outputs.",
    )
    def _run(
        context: dg.OpExecutionContext, item: Any
    ) -> Iterator[dg.Output[list[ClusterOutcome]]]:
        # A generator: ops that open a Pipes session must yield typed events.
        if isinstance(item, GraphItem):
            outcomes = run_whole_graphs(context, item)
        else:
            outcomes = _run_batch(context, item)
        # The outcomes first: with rc2_executor the next stage plans on them (blocking what
        # reads the failure, running the rest) although this step then fails.
        yield dg.Output(outcomes)
        failed = [o for o in outcomes if o.failed]
        if failed:
            raise dg.Failure(
                description="\n".join(failure_text(o) for o in failed),
                metadata={
                    "failed quanta": dg.MetadataValue.json([f for o in failed for f in o.failures]),
                    "quanta": dg.MetadataValue.json([o.counts() for o in failed]),
                    "attempts": max(o.attempts for o in failed),
                },
                allow_retries=False,
            )

    return _run


#: One ``plan_<stage>`` op per stage of :data:`STAGES`, in order.
PLAN_OPS = [make_plan_op(stage, i == 0) for i, stage in enumerate(STAGES)]
#: One ``run_<stage>`` op per stage of :data:`STAGES`, in order.
RUN_OPS = [make_run_op(stage) for stage in STAGES]
