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
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from rc2_platform.defs.execution_summary import TRACT_WIDE, band_summary, mapping_key
from rc2_platform.defs.graph_assets import quantum_graph
from rc2_platform.defs.partitions import to_tract, tract_band_partitions
from rc2_platform.defs.pipes_htcondor import PipesHTCondorClient
from rc2_platform.defs.pipes_k8s import Rc2PipesK8sClient
from rc2_platform.defs.resources import ButlerResource
from rc2_platform.errors import ExecutionError
from rc2_platform.execution.execution_config import ExecutionConfig, load_execution_config
from rc2_platform.execution.journal import run_directory
from rc2_platform.execution.run_lock import read_holder
from rc2_platform.execution.run_state import QuantumState
from rc2_platform.execution.runner import RunOptions
from rc2_platform.execution.stages import (
    ClusterOutcome,
    ClusterSpec,
    Ledger,
    check_stages,
    finish_run,
    plan_stage,
    prepare_run,
    record_outcomes,
    run_cluster_job,
)

__all__ = [
    "OUTPUT_DATASET_TYPES",
    "STAGES",
    "ExecutionRunConfig",
    "execution_job",
    "execution_resources",
    "pipeline_outputs",
]

GROUP = "outputs"
#: Output dataset types shown as assets (keys are the dataset type names).
OUTPUT_DATASET_TYPES = ("calexp", "deepCoadd", "deepCoadd_ref", "deepCoadd_forced_src")
#: The stages of the op graph: the clustering rules of the packaged execution config.
STAGES = tuple(load_execution_config().clustering)


class ExecutionRunConfig(dg.Config):
    """Run config of the execution job (the launchpad's form)."""

    backend: str = ""
    """``local``, ``htcondor`` or ``kubernetes``; empty = the execution config's default."""
    execution_config: str = ""
    """A site execution config YAML; empty = the packaged default. Its clustering rules
    must name the same steps as the packaged one (the op graph is static)."""
    processes: int = 0
    """Processes per cluster job; 0 = the config's ``processes_per_job``."""
    resume: bool = False
    """Skip quanta whose outputs are already registered in the RUN."""
    fail_on_failed_quanta: bool = False
    """Fail the Dagster run when a quantum failed (else: reported in metadata and logs)."""


@dataclass
class _State:
    """What flows between the fixed ops: the run's settings and a ledger per tract."""

    backend: str
    config_path: str | None
    processes: int | None
    fail_on_failed_quanta: bool
    ledgers: list[Ledger] = field(default_factory=list)

    def config(self) -> ExecutionConfig:
        return load_execution_config(self.config_path)


def _tracts_of_run(context: dg.OpExecutionContext) -> list[str]:
    tracts = set()
    for key in context.partition_keys:
        parsed = tract_band_partitions.get_partition_key_from_str(str(key))
        tracts.add(parsed.keys_by_dimension["tract"])
    return sorted(tracts)


def _graph_of(context: dg.OpExecutionContext, tract: str) -> tuple[str, str]:
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=quantum_graph.key, asset_partitions=[tract]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        raise ExecutionError(
            f"tract {tract} has no quantum_graph materialization: materialize the "
            f"quantum_graph asset for partition {tract} first"
        )
    metadata = records[0].asset_materialization.metadata
    path = metadata.get("path")
    if path is None:
        raise ExecutionError(
            f"the newest quantum_graph materialization of tract {tract} has no 'path'"
        )
    return str(path.value), str(getattr(metadata.get("output_run"), "value", ""))


def _holder_run_ended(context: dg.OpExecutionContext, repo: str | Path, run: str) -> bool:
    """Whether the RUN's lock is held by a Dagster run this instance knows has ended."""
    holder = read_holder(run_directory(repo, run))
    if holder is None or not (holder.owner or "").startswith("dagster:"):
        return False
    record = context.instance.get_run_by_id(str(holder.owner).split(":", 1)[1])
    return record is None or record.is_finished


@dg.op(ins={"quantum_graph": dg.In(dg.Nothing)}, tags={"kind": "rc2"})
def prepare_execution(
    context: dg.OpExecutionContext, config: ExecutionRunConfig, butler: ButlerResource
) -> _State:
    """Find each tract's graph, check its stages, register its RUN, journal the start."""
    exec_config = load_execution_config(config.execution_config or None)
    backend = config.backend or exec_config.backends.default
    state = _State(
        backend,
        config.execution_config or None,
        config.processes or None,
        config.fail_on_failed_quanta,
    )
    options = RunOptions(backend=backend, processes=state.processes, resume=config.resume)
    owner = f"dagster:{context.run.root_run_id or context.run_id}"
    for tract in _tracts_of_run(context):
        path, run = _graph_of(context, tract)
        check_stages(path, exec_config, STAGES)
        options.takeover = _holder_run_ended(context, butler.root, run)
        ledger = prepare_run(
            butler.root, tract, path, exec_config, backend_name=backend, options=options,
            owner=owner, command=f"Dagster run {context.run_id} (execution_job)",
        )  # fmt: skip
        context.log.info(
            f"tract {tract}: {ledger.n_quanta} quanta into RUN {ledger.output_run} on {backend} "
            f"({ledger.counts()[QuantumState.SUCCEEDED]} already done)"
        )
        state.ledgers.append(ledger)
    return state


def _make_plan_op(stage: str, first: bool) -> dg.OpDefinition:
    ins = {"state": dg.In()} if first else {"state": dg.In(), "outcomes": dg.In()}

    @dg.op(
        name=f"plan_{stage}",
        ins=ins,
        out={"clusters": dg.DynamicOut(), "state": dg.Out()},
        description=f"Fold the previous stage's outcomes in; fan out the clusters of {stage}.",
    )
    def _plan(
        context: dg.OpExecutionContext, state: _State, outcomes: list[ClusterOutcome] | None = None
    ) -> Iterator[dg.Output[Any] | dg.DynamicOutput[Any]]:
        config = state.config()
        n = 0
        for ledger in state.ledgers:
            record_outcomes(ledger, outcomes or [])
            blocked_before = ledger.counts()[QuantumState.BLOCKED]
            for spec in plan_stage(ledger, stage, config):
                n += 1
                yield dg.DynamicOutput(
                    (state.backend, state.config_path, state.processes, spec),
                    mapping_key=mapping_key(spec.tract, spec.cluster),
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
    context: dg.OpExecutionContext, item: tuple[str, str | None, int | None, ClusterSpec]
) -> ClusterOutcome:
    backend, config_path, processes, spec = item
    config = load_execution_config(config_path)
    butler: ButlerResource = context.resources.butler
    reports: list[dict[str, Any]] = []
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
    outcome = run_cluster_job(
        butler.root, spec, config, launcher=launcher, options=options, backend_name=backend
    )
    counts = outcome.counts()
    context.log.info(
        f"cluster {spec.cluster}: {json.dumps(counts, sort_keys=True)} in {outcome.attempts} attempt(s)"
    )
    for text, n in outcome.errors.items():
        context.log.warning(f"cluster {spec.cluster}: {n} quanta failed: {text}")
    for report in reports:
        context.log.debug(f"worker report: {json.dumps(report, sort_keys=True)}")
    return outcome


def _make_run_op(stage: str) -> dg.OpDefinition:
    @dg.op(
        name=f"run_{stage}",
        required_resource_keys={"butler", "htcondor_pipes", "k8s_pipes"},
        description=f"Run one cluster job of {stage} on the backend and register its outputs.",
    )
    def _run(context: dg.OpExecutionContext, item: Any) -> Iterator[dg.Output[ClusterOutcome]]:
        # A generator: ops that open a Pipes session must yield typed events.
        yield dg.Output(_run_spec(context, item))

    return _run


#: States shown in the assets' metadata, and those that make a tract not done.
_SHOWN = (QuantumState.SUCCEEDED, QuantumState.FAILED, QuantumState.BLOCKED)
_NOT_DONE = (QuantumState.FAILED, QuantumState.BLOCKED, QuantumState.PENDING)

_PLAN_OPS = [_make_plan_op(stage, i == 0) for i, stage in enumerate(STAGES)]
_RUN_OPS = [_make_run_op(stage) for stage in STAGES]


def _markdown(summary: dict[str, dict[str, Any]], name: str) -> str:
    header = " | ".join(st.value for st in _SHOWN)
    lines = [f"| band | {header} | datasets | rows |", "|---|---|---|---|---|---|"]
    for band, s in sorted(summary.items()):
        counts = " | ".join(str(s[st.value]) for st in _SHOWN)
        rows = s["rows"].get(name, "")
        lines.append(f"| {band} | {counts} | {s['datasets'].get(name, 0)} | {rows} |")
    return "\n".join(lines)


def _metadata(
    state: _State, summaries: dict[str, dict[str, dict[str, Any]]], name: str
) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    total = {s.value: 0 for s in _SHOWN}
    for ledger in state.ledgers:
        summary = summaries[ledger.tract]
        prefix = f"{ledger.tract} " if len(state.ledgers) > 1 else ""
        meta[f"{prefix}RUN"] = ledger.output_run
        meta[f"{prefix}per band"] = dg.MetadataValue.md(_markdown(summary, name))
        for band, s in sorted(summary.items()):
            if band == TRACT_WIDE:
                continue
            for key in total:
                meta[f"{prefix}{band} quanta {key}"] = dg.MetadataValue.int(s[key])
            meta[f"{prefix}{band} datasets"] = dg.MetadataValue.int(s["datasets"].get(name, 0))
            if name in s["rows"]:
                meta[f"{prefix}{band} rows"] = dg.MetadataValue.int(s["rows"][name])
        for key in total:
            total[key] += ledger.counts()[key]
        if ledger.errors:
            meta[f"{prefix}failures"] = dg.MetadataValue.json(ledger.errors)
    meta.update({f"quanta {k}": dg.MetadataValue.int(v) for k, v in total.items()})
    return meta


@dg.op(
    ins={"state": dg.In(), "outcomes": dg.In()},
    out={name: dg.Out(dg.Nothing) for name in OUTPUT_DATASET_TYPES},
    required_resource_keys={"butler"},
)
def materialize_outputs(
    context: dg.OpExecutionContext, state: _State, outcomes: list[ClusterOutcome]
) -> Iterator[dg.Output[None]]:
    """Journal the end of each RUN and materialize the outputs with per-band counts."""
    butler: ButlerResource = context.resources.butler
    config = state.config()
    summaries = {}
    failed = 0
    for ledger in state.ledgers:
        record_outcomes(ledger, outcomes)
        counts = finish_run(butler.root, ledger, config)
        failed += sum(counts[s] for s in _NOT_DONE)
        summaries[ledger.tract] = band_summary(butler.root, ledger, OUTPUT_DATASET_TYPES, config)
        context.log.info(f"tract {ledger.tract} RUN {ledger.output_run}: {json.dumps(counts)}")
        for text, n in ledger.errors.items():
            context.log.warning(f"tract {ledger.tract}: {n} quanta failed: {text}")
    if failed and state.fail_on_failed_quanta:
        raise ExecutionError(
            f"{failed} quanta did not succeed (see the metadata and `rc2 report RUN`); "
            "fail_on_failed_quanta is set"
        )
    for name in OUTPUT_DATASET_TYPES:
        yield dg.Output(None, output_name=name, metadata=_metadata(state, summaries, name))


@dg.graph_multi_asset(
    outs={
        name: dg.AssetOut(kinds={"python"}, description=f"The pipeline's {name} datasets.")
        for name in OUTPUT_DATASET_TYPES
    },
    ins={
        "quantum_graph": dg.AssetIn(
            key=quantum_graph.key, partition_mapping=to_tract, dagster_type=dg.Nothing
        )
    },
    partitions_def=tract_band_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    name="pipeline_outputs",
    group_name=GROUP,
)
def pipeline_outputs(quantum_graph: Any) -> Any:
    """Execute the tract's QuantumGraph cluster by cluster, stage by stage."""
    state = prepare_execution(quantum_graph)
    outcomes = None
    for plan_op, run_op in zip(_PLAN_OPS, _RUN_OPS, strict=True):
        clusters, state = plan_op(state) if outcomes is None else plan_op(state, outcomes)
        outcomes = clusters.map(run_op).collect()
    results = materialize_outputs(state, outcomes)
    return {name: getattr(results, name) for name in OUTPUT_DATASET_TYPES}


execution_job = dg.define_asset_job(
    "execution_job",
    selection=dg.AssetSelection.groups(GROUP),
    description="Execute one tract's QuantumGraph (partition range g|T...y|T) cluster by cluster.",
)


def execution_resources(
    htcondor: PipesHTCondorClient | None = None, k8s: Rc2PipesK8sClient | None = None
) -> dict[str, Any]:
    """The resources the execution job needs besides ``butler``: its Pipes clients."""
    return {
        "htcondor_pipes": htcondor or PipesHTCondorClient(),
        "k8s_pipes": k8s or Rc2PipesK8sClient(),
    }
