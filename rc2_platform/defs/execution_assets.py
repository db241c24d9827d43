"""Execution of a tract's QuantumGraph as a graph-backed multi-asset (one step per cluster).

Lineage: ``quantum_graph`` (per tract) → ``calexp``, ``deepCoadd``, ``deepCoadd_ref``,
``deepCoadd_forced_src`` (group ``outputs``, per tract × band). One run covers a tract
(a partition range ``g|T...y|T``; ``BackfillPolicy.single_run``), or several tracts.

Op graph (static; one ``plan_<stage>``/``run_<stage>`` pair per clustering rule of the
packaged execution config)::

    prepare_execution → plan_step1 ─(one step per cluster)→ run_step1 ─collect→
                        plan_step2 → run_step2 → … → materialize_outputs

Every op is a call into :mod:`rc2_platform.execution.stages`, the Dagster-stage driver of
the run-state machine (:class:`rc2_platform.execution.run_state.RunState`); each
``run_<stage>`` step runs ONE cluster job on the configured backend (local processes;
HTCondor and Kubernetes through Dagster Pipes) and registers its outputs on this side.

This module holds the last op (``materialize_outputs``), the op graph, the multi-asset,
the job and its resources; the run config and ``prepare_execution`` are in
:mod:`rc2_platform.defs.execution_prepare`, the ``plan_<stage>``/``run_<stage>`` ops in
:mod:`rc2_platform.defs.execution_stage_ops`.
"""

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg

from rc2_platform.defs.checks import log_check_outcomes
from rc2_platform.defs.execution_prepare import (
    STAGES,
    TRACT_TAG,
    ExecutionRunConfig,
    ExecutionState,
    prepare_execution,
    tag_tracts,
)
from rc2_platform.defs.execution_stage_ops import PLAN_OPS, RUN_OPS
from rc2_platform.defs.executor import REGISTRY_POOL, rc2_executor
from rc2_platform.defs.graph_assets import quantum_graph
from rc2_platform.defs.output_metadata import partition_metadata
from rc2_platform.defs.partitions import to_tract, tract_band_partitions
from rc2_platform.defs.pipes_htcondor import PipesHTCondorClient
from rc2_platform.defs.resources import ButlerResource, ValidationResource
from rc2_platform.execution.stages import ClusterOutcome, finish_run, record_outcomes
from rc2_platform.monitor.checks import tract_checks
from rc2_platform.monitor.outputs import band_summary, partition_complete

if TYPE_CHECKING:  # dagster_k8s and kubernetes load only when a Kubernetes step needs them
    from rc2_platform.defs.pipes_k8s import Rc2PipesK8sClient

__all__ = [
    "OUTPUT_DATASET_TYPES",
    "STAGES",
    "TRACT_TAG",
    "ExecutionRunConfig",
    "execution_job",
    "execution_resources",
    "pipeline_outputs",
]

GROUP = "outputs"
#: Output dataset types shown as assets (keys are the dataset type names).
OUTPUT_DATASET_TYPES = ("calexp", "deepCoadd", "deepCoadd_ref", "deepCoadd_forced_src")

#: The state's former name here: step outputs pickled before the state moved to
#: execution_prepare (a run re-executed from failure) still load.
_State = ExecutionState


def _band_of(partition_key: str) -> tuple[str, str]:
    keys = tract_band_partitions.get_partition_key_from_str(partition_key).keys_by_dimension
    return keys["tract"], keys["band"]


@dg.op(
    ins={"state": dg.In(), "outcomes": dg.In()},
    out={name: dg.Out(dg.Nothing, is_required=False) for name in OUTPUT_DATASET_TYPES},
    required_resource_keys={"butler", "validation"},
    pool=REGISTRY_POOL,
)
def materialize_outputs(
    context: dg.OpExecutionContext, state: ExecutionState, outcomes: list[list[ClusterOutcome]]
) -> Iterator[dg.AssetMaterialization]:
    """Journal the end of each RUN; materialize each band partition whose datasets all exist.

    A partition (asset × band × tract) is materialized when every dataset of that type in
    that band (and every band-spanning one) is registered; the others are left
    unmaterialized (logged), so "failed and missing" backfills pick exactly them.
    """
    butler: ButlerResource = context.resources.butler
    validation: ValidationResource = context.resources.validation
    flat = [o for group in outcomes for o in group]
    config = state.config()
    tag_tracts(context)
    summaries, checks = {}, {}
    bands_of: dict[str, list[str]] = {}
    for key in context.partition_keys:
        tract, band = _band_of(str(key))
        bands_of.setdefault(tract, []).append(band)
    for ledger in state.ledgers:
        record_outcomes(ledger, flat)
        counts = finish_run(butler.root, ledger, config)
        failures = [f for o in flat if o.tract == ledger.tract for f in o.failures]
        summary = summaries[ledger.tract] = band_summary(
            butler.root, ledger, OUTPUT_DATASET_TYPES, config, failures
        )
        context.log.info(f"tract {ledger.tract} RUN {ledger.output_run}: {json.dumps(counts)}")
        # The validation figure is drawn by a follow-up run (validation_figure_sensor).
        checks[ledger.tract] = tract_checks(
            butler.root, ledger.output_run, ledger.graph_path, ledger.tract,
            sorted(set(bands_of.get(ledger.tract, []))), OUTPUT_DATASET_TYPES, config,
            validation.config(), summary=summary,
        )  # fmt: skip
    ledgers = {ledger.tract: ledger for ledger in state.ledgers}
    missing = []
    for name in OUTPUT_DATASET_TYPES:
        for key in context.partition_keys:
            tract, band = _band_of(str(key))
            summary = summaries[tract]
            if not partition_complete(summary, name, band):
                missing.append(f"{name} {key}")
                continue
            metadata = partition_metadata(ledgers[tract], summary, name, band)
            yield dg.AssetMaterialization(asset_key=name, partition=str(key), metadata=metadata)
    if missing:
        context.log.warning(
            f"not materialized (datasets missing: failed or blocked quanta): {', '.join(missing)}"
        )
    for tract, outcomes_by_band in sorted(checks.items()):
        failed = log_check_outcomes(context, tract, outcomes_by_band)
        if failed:
            context.log.warning(f"tract {tract}: {failed} asset checks failed")


@dg.graph(name="pipeline_outputs", out={name: dg.GraphOut() for name in OUTPUT_DATASET_TYPES})
def _execute_tract(quantum_graph: Any) -> Any:
    """Execute the tract's QuantumGraph cluster by cluster, stage by stage."""
    state = prepare_execution(quantum_graph)
    outcomes = None
    for plan_op, run_op in zip(PLAN_OPS, RUN_OPS, strict=True):
        clusters, state = plan_op(state) if outcomes is None else plan_op(state, outcomes)
        outcomes = clusters.map(run_op).collect()
    results = materialize_outputs(state, outcomes)
    return {name: getattr(results, name) for name in OUTPUT_DATASET_TYPES}


#: The outputs' lineage as the pipeline has it: each reads the previous one.
_UPSTREAM = {
    name: dg.AssetKey(OUTPUT_DATASET_TYPES[i - 1]) if i else quantum_graph.key
    for i, name in enumerate(OUTPUT_DATASET_TYPES)
}

pipeline_outputs = dg.AssetsDefinition.from_graph(
    _execute_tract,
    keys_by_input_name={"quantum_graph": quantum_graph.key},
    internal_asset_deps={name: {key} for name, key in _UPSTREAM.items()},
    partitions_def=tract_band_partitions,
    partition_mappings={"quantum_graph": to_tract},
    group_name=GROUP,
    descriptions_by_output_name={
        name: f"The pipeline's {name} datasets of one tract and band (per-band figures in "
        "the metadata; materialized once all of them are registered)."
        for name in OUTPUT_DATASET_TYPES
    },
    tags_by_output_name={name: {"dagster/kind/python": ""} for name in OUTPUT_DATASET_TYPES},
    backfill_policy=dg.BackfillPolicy.single_run(),
)


execution_job = dg.define_asset_job(
    "execution_job",
    # The checks are evaluated by materialize_outputs itself (per partition).
    selection=dg.AssetSelection.groups(GROUP).without_checks(),
    description="Execute one tract's QuantumGraph (partition range g|T...y|T) cluster by cluster.",
    executor_def=rc2_executor,
)


def execution_resources(
    htcondor: PipesHTCondorClient | None = None, k8s: "Rc2PipesK8sClient | None" = None
) -> dict[str, Any]:
    """The resources the execution job needs besides ``butler``: its Pipes clients."""
    return {
        "htcondor_pipes": htcondor or PipesHTCondorClient(),
        "k8s_pipes": k8s or dg.ResourceDefinition(resource_fn=lambda _: _LazyK8sPipes()),
    }


class _LazyK8sPipes:
    """The default ``k8s_pipes``: an ``Rc2PipesK8sClient`` made on first use, so that
    loading the definitions and running local steps do not import ``dagster_k8s`` and
    ``kubernetes`` (~0.4 s of CPU per process)."""

    def __init__(self) -> None:
        self._client: Rc2PipesK8sClient | None = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            from rc2_platform.defs.pipes_k8s import Rc2PipesK8sClient

            self._client = Rc2PipesK8sClient()
        return getattr(self._client, name)
