"""The execution job's run config, the state its ops hand on, and its first op.

``prepare_execution`` finds each tract's newest ``quantum_graph`` materialization,
checks the graph's stages against :data:`STAGES` (the job's op graph is static), registers
the RUN and journals its start (:func:`rc2_platform.execution.stages.prepare_run`). The
:class:`ExecutionState` it returns flows through every ``plan_<stage>`` op
(:mod:`rc2_platform.defs.execution_stage_ops`) to ``materialize_outputs``
(:mod:`rc2_platform.defs.execution_assets`).
"""

from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from rc2_platform.defs.executor import REGISTRY_POOL
from rc2_platform.defs.graph_assets import quantum_graph
from rc2_platform.defs.partitions import tract_band_partitions
from rc2_platform.defs.resources import ButlerResource
from rc2_platform.defs.run_queue import TRACT_TAG
from rc2_platform.errors import ExecutionError
from rc2_platform.execution.execution_config import ExecutionConfig, load_execution_config
from rc2_platform.execution.journal import run_directory
from rc2_platform.execution.run_lock import read_holder
from rc2_platform.execution.runner import RunOptions
from rc2_platform.execution.stages import Ledger, check_stages, prepare_run
from rc2_platform.monitor.outputs import skipped_by_task

__all__ = [
    "DRIVERS",
    "STAGES",
    "TRACT_TAG",
    "ExecutionRunConfig",
    "ExecutionState",
    "prepare_execution",
    "tag_tracts",
]

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
class ExecutionState:
    """What flows between the fixed ops: the run's settings and a ledger per tract.

    Attributes
    ----------
    backend : str
        The backend the cluster jobs run on.
    config_path : str or None
        The site execution config, None for the packaged one.
    processes : int or None
        Processes per cluster job, None for the config's default.
    per_step : int
        Clusters per ``run_<stage>`` step (``driver: clusters``).
    at_once : int
        Cluster jobs run at once, 0 for the default.
    driver : str
        ``graph`` or ``clusters`` (one of :data:`DRIVERS`).
    ledgers : list of Ledger
        One per tract of the run.
    """

    backend: str
    config_path: str | None
    processes: int | None
    per_step: int = 1
    at_once: int = 0
    driver: str = "clusters"
    ledgers: list[Ledger] = field(default_factory=list)

    def config(self) -> ExecutionConfig:
        """The run's execution config (site or packaged)."""
        return load_execution_config(self.config_path)


def _tracts_of_run(context: dg.OpExecutionContext) -> list[str]:
    tracts = set()
    for key in context.partition_keys:
        parsed = tract_band_partitions.get_partition_key_from_str(str(key))
        tracts.add(parsed.keys_by_dimension["tract"])
    return sorted(tracts)


def tag_tracts(context: dg.OpExecutionContext) -> list[str]:
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
) -> ExecutionState:
    """Find each tract's graph, check its stages, register its RUN, journal the start."""
    exec_config = load_execution_config(config.execution_config or None)
    backend = config.backend or exec_config.backends.default
    if config.driver not in DRIVERS:
        raise ExecutionError(
            f"prepare_execution config driver {config.driver!r} is not one of {list(DRIVERS)}"
        )
    state = ExecutionState(
        backend,
        config.execution_config or None,
        config.processes or None,
        max(1, config.cluster_jobs_per_step) if backend == "local" else 1,
        max(0, config.cluster_jobs_at_once),
        config.driver if backend == "local" else "clusters",
    )
    options = RunOptions(backend=backend, processes=state.processes, resume=config.resume)
    owner = f"dagster:{context.run.root_run_id or context.run_id}"
    tracts = tag_tracts(context)
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
