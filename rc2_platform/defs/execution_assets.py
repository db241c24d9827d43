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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from rc2_platform.defs.checks import log_check_outcomes
from rc2_platform.defs.executor import REGISTRY_POOL, rc2_executor
from rc2_platform.defs.graph_assets import quantum_graph
from rc2_platform.defs.output_metadata import partition_metadata
from rc2_platform.defs.partitions import to_tract, tract_band_partitions
from rc2_platform.defs.pipes_htcondor import PipesHTCondorClient
from rc2_platform.defs.resources import ButlerResource, ValidationResource
from rc2_platform.defs.whole_graph_step import (
    GraphItem,
    fork_in_step,
    graph_output,
    log_outcome,
    run_whole_graphs,
)
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
from rc2_platform.monitor.checks import tract_checks
from rc2_platform.monitor.outputs import (
    band_summary,
    failure_text,
    mapping_key,
    partition_complete,
    skipped_by_task,
)

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
#: Run tag naming the tract(s) a run touches (comma-separated); see deploy/dagster.yaml.
TRACT_TAG = "rc2/tract"
#: Output dataset types shown as assets (keys are the dataset type names).
OUTPUT_DATASET_TYPES = ("calexp", "deepCoadd", "deepCoadd_ref", "deepCoadd_forced_src")
#: The stages of the op graph: the clustering rules of the packaged execution config.
STAGES = tuple(load_execution_config().clustering)
#: ``ExecutionRunConfig.driver`` values.
DRIVERS = ("graph", "clusters")


class ExecutionRunConfig(dg.Config):
    """Run config of the execution job (the launchpad's form)."""

    backend: str = ""
    """``local``, ``htcondor`` or ``kubernetes``; empty = the execution config's default."""
    execution_config: str = ""
    """A site execution config YAML; empty = the packaged default. Its clustering rules
    must name the same steps as the packaged one (the op graph is static)."""
    processes: int = 0
    """Processes per cluster job; 0 = the config's ``processes_per_job``."""
    resume: bool = True
    """Skip quanta whose outputs are already registered in the RUN (a backfill, sensor run
    or re-execution of a processed tract redoes nothing and logs what it skipped). False
    refuses a RUN that already holds outputs. A clean reprocessing goes to a new RUN: the
    ``quantum_graph`` config's ``output_run`` or the monthly schedule's dated RUN."""
    driver: str = "graph"
    """``graph`` (local backend): ONE step runs every cluster job of the run's graphs with
    ``rc2 run``'s loop (a job starts as soon as the clusters it reads are done; no stage
    barriers, no per-step start-up); each cluster is logged as it ends. ``clusters``: a
    ``run_<stage>`` step per cluster (or per ``cluster_jobs_per_step`` clusters), stage by
    stage: the UI's timeline shows each cluster. HTCondor and Kubernetes always use
    ``clusters`` (their jobs go through Dagster Pipes, one step each)."""
    cluster_jobs_per_step: int = 1
    """``driver: clusters``: clusters per ``run_<stage>`` step, run at once (local backend only; else 1). 1: a
    step per cluster (the UI's timeline shows each). More: fewer, larger steps, e.g.
    with the in-process executor one step per stage drives that many cluster jobs at
    once, which saves Dagster's per-step start (see docs/dagster.md, Overhead)."""
    cluster_jobs_at_once: int = 0
    """Cluster jobs a batched step runs at once, 0 = all of its clusters; ``driver: graph``:
    cluster jobs at once, 0 = the local backend's ``max_workers`` (as ``rc2 run``)."""


@dataclass
class _State:
    """What flows between the fixed ops: the run's settings and a ledger per tract."""

    backend: str
    config_path: str | None
    processes: int | None
    per_step: int = 1
    at_once: int = 0
    driver: str = "clusters"
    ledgers: list[Ledger] = field(default_factory=list)

    def config(self) -> ExecutionConfig:
        return load_execution_config(self.config_path)


def _tracts_of_run(context: dg.OpExecutionContext) -> list[str]:
    tracts = set()
    for key in context.partition_keys:
        parsed = tract_band_partitions.get_partition_key_from_str(str(key))
        tracts.add(parsed.keys_by_dimension["tract"])
    return sorted(tracts)


def _tag_tracts(context: dg.OpExecutionContext) -> list[str]:
    """The run's tracts; tags the run ``rc2/tract`` if it was launched without the tag.

    UI launches and asset backfills carry only partition (range) tags, and re-executions
    through the Python API no parent tags: the first step of the run adds it.
    """
    tracts = _tracts_of_run(context)
    if TRACT_TAG not in context.run.tags:
        context.instance.add_run_tags(context.run_id, {TRACT_TAG: ",".join(tracts)})
    return tracts


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


@dg.op(ins={"quantum_graph": dg.In(dg.Nothing)}, tags={"kind": "rc2"}, pool=REGISTRY_POOL)
def prepare_execution(
    context: dg.OpExecutionContext, config: ExecutionRunConfig, butler: ButlerResource
) -> _State:
    """Find each tract's graph, check its stages, register its RUN, journal the start."""
    exec_config = load_execution_config(config.execution_config or None)
    backend = config.backend or exec_config.backends.default
    if config.driver not in DRIVERS:
        raise ExecutionError(
            f"prepare_execution config driver {config.driver!r} is not one of {list(DRIVERS)}"
        )
    state = _State(
        backend,
        config.execution_config or None,
        config.processes or None,
        max(1, config.cluster_jobs_per_step) if backend == "local" else 1,
        max(0, config.cluster_jobs_at_once),
        config.driver if backend == "local" else "clusters",
    )
    options = RunOptions(backend=backend, processes=state.processes, resume=config.resume)
    owner = f"dagster:{context.run.root_run_id or context.run_id}"
    tracts = _tag_tracts(context)
    for tract in tracts:
        path, run = _graph_of(context, tract)
        check_stages(path, exec_config, STAGES)
        options.takeover = _holder_run_ended(context, butler.root, run)
        ledger = prepare_run(
            butler.root, tract, path, exec_config, backend_name=backend, options=options,
            owner=owner, command=f"Dagster run {context.run_id} (execution_job)",
        )  # fmt: skip
        context.log.info(
            f"tract {tract}: {ledger.n_quanta} quanta into RUN {ledger.output_run} on {backend}"
        )
        skipped = skipped_by_task(ledger, exec_config)
        if skipped:
            what = ", ".join(f"{task} {n}" for task, n in skipped.items())
            context.log.info(
                f"tract {tract}: resuming RUN {ledger.output_run}: {sum(skipped.values())} of "
                f"{ledger.n_quanta} quanta already done, skipped ({what})"
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
        context: dg.OpExecutionContext,
        state: _State,
        outcomes: list[list[ClusterOutcome]] | None = None,
    ) -> Iterator[dg.Output[Any] | dg.DynamicOutput[Any]]:
        config = state.config()
        flat = [o for group in outcomes or [] for o in group]
        _tag_tracts(context)
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


def _make_run_op(stage: str) -> dg.OpDefinition:
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


_PLAN_OPS = [_make_plan_op(stage, i == 0) for i, stage in enumerate(STAGES)]
_RUN_OPS = [_make_run_op(stage) for stage in STAGES]


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
    context: dg.OpExecutionContext, state: _State, outcomes: list[list[ClusterOutcome]]
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
    _tag_tracts(context)
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
    for plan_op, run_op in zip(_PLAN_OPS, _RUN_OPS, strict=True):
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
