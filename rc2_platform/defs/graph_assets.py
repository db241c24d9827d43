"""QuantumGraph generation as a tract-partitioned asset, its job, and the sensor that starts it."""

import json
import re
from typing import Any

import dagster as dg

from rc2_platform.defs.ingest_assets import (
    bright_object_masks,
    calibrations,
    raws,
    refcat_shards,
    skymap,
    visits,
)
from rc2_platform.defs.partitions import to_tract, tract_partitions
from rc2_platform.defs.resources import ButlerResource, SurveyResource
from rc2_platform.graph import save_graph
from rc2_platform.graph.builder import QuantumGraphBuilder
from rc2_platform.pipeline import Pipeline

GROUP = "quantum_graph"


class QuantumGraphConfig(dg.Config):
    """Run config of graph generation (the launchpad's form)."""

    pipeline: str = "DRP-RC2"
    input_collections: list[str] = ["HSC/defaults"]
    output_run: str = ""
    where: str = ""
    skip_existing_in: list[str] = []
    clobber: bool = False


def default_output_run(tract: int | str, stamp: str) -> str:
    """The RUN a tract is processed into when the config gives none."""
    return f"HSC/runs/RC2/{stamp}/tract{tract}"


def graph_path(repo_root: Any, output_run: str, tract: int | str) -> Any:
    """Where the graph file of a tract and run is kept inside the repository."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", output_run)
    return repo_root / "_graphs" / safe / f"tract{tract}.qgraph"


@dg.asset(
    group_name=GROUP,
    partitions_def=tract_partitions,
    deps=[
        dg.AssetDep(raws, partition_mapping=to_tract),
        dg.AssetDep(visits, partition_mapping=to_tract),
        dg.AssetDep(bright_object_masks, partition_mapping=to_tract),
        calibrations,
        refcat_shards,
        skymap,
    ],
    kinds={"python"},
)
def quantum_graph(
    context: dg.AssetExecutionContext,
    config: QuantumGraphConfig,
    butler: ButlerResource,
    survey: SurveyResource,
) -> dg.MaterializeResult:
    """The QuantumGraph of the pipeline over one tract, written into the repository."""
    tract = int(context.partition_key)
    survey_config = survey.load()
    stamp = context.run.run_id[:8]
    output_run = config.output_run or default_output_run(tract, stamp)
    where = "skymap = :skymap AND tract = :tract"
    if config.where:
        where += f" AND ({config.where})"
    pipeline = Pipeline.from_yaml(config.pipeline)
    with butler.open() as repo:
        builder = QuantumGraphBuilder(
            repo,
            pipeline.to_graph(),
            input_collections=config.input_collections,
            output_run=output_run,
            where=where,
            bind={"skymap": survey_config.skymap.name, "tract": tract},
            skip_existing_in=config.skip_existing_in,
            clobber=config.clobber,
        )
        graph = builder.build()
        path = graph_path(repo.root, output_run, tract)
        path.parent.mkdir(parents=True, exist_ok=True)
        graph.metadata["pipeline"] = config.pipeline
        size = save_graph(graph, path)
    counts = graph.counts_by_task()
    per_task = ", ".join(f"{label} {n}" for label, n in counts.items())
    context.log.info(f"tract {tract}: {len(graph)} quanta in {path} ({size} bytes): {per_task}")
    table = "\n".join(f"| {label} | {n} |" for label, n in counts.items())
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "output_run": output_run,
            "pipeline": config.pipeline,
            "quanta": dg.MetadataValue.int(len(graph)),
            "file_bytes": dg.MetadataValue.int(size),
            "quanta_per_task": dg.MetadataValue.md(f"| task | quanta |\n|---|---|\n{table}"),
            "counts_json": dg.MetadataValue.json(counts),
            "pruned": dg.MetadataValue.json(graph.metadata.get("pruned", {})),
        }
    )


quantum_graph_job = dg.define_asset_job(
    "quantum_graph_job",
    selection=[quantum_graph],
    description="Build the QuantumGraph of one tract (launch from the UI with the config form).",
)


def _newest_storage_id(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: list[str] | None = None
) -> int | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=partitions), limit=1
    ).records
    return records[0].storage_id if records else None


def ready_tracts(
    instance: dg.DagsterInstance, bands: list[str], tracts: list[str]
) -> dict[str, int]:
    """Tracts whose per-band ingest partitions and global ingest assets are all materialized.

    Returns tract -> the newest materialization storage id among its inputs, so the sensor
    can tell new data from data it already handled.
    """
    global_ids = [
        _newest_storage_id(instance, a.key) for a in (calibrations, refcat_shards, skymap)
    ]
    if any(i is None for i in global_ids):
        return {}
    per_band = (raws, visits, bright_object_masks)
    done = {a.key: instance.get_materialized_partitions(a.key) for a in per_band}
    ready: dict[str, int] = {}
    for tract in tracts:
        needed = [f"{band}|{tract}" for band in bands]
        if not all(set(needed) <= parts for parts in done.values()):
            continue
        ids = [_newest_storage_id(instance, a.key, needed) for a in per_band]
        ready[tract] = max(i for i in [*global_ids, *ids] if i is not None)
    return ready


@dg.sensor(
    job=quantum_graph_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Starts graph generation for a tract once its raws, visits and masks are ingested in "
        "every band, and the calibrations, reference catalogs and sky map are in. The cursor "
        "remembers the newest ingest each tract was built from, so no tract is built twice "
        "for the same data."
    ),
)
def quantum_graph_sensor(
    context: dg.SensorEvaluationContext, survey: SurveyResource
) -> dg.SensorResult | dg.SkipReason:
    """Request graph generation for tracts whose ingest is complete and new."""
    config = survey.load()
    handled: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    tracts = [t for t in context.instance.get_dynamic_partitions("tracts")]
    ready = ready_tracts(context.instance, list(config.bands), tracts)
    requests = []
    for tract, newest in sorted(ready.items()):
        if handled.get(tract, -1) >= newest:
            continue
        handled[tract] = newest
        requests.append(
            dg.RunRequest(
                run_key=f"qgraph-{tract}-{newest}",
                partition_key=tract,
                run_config=dg.RunConfig(
                    ops={
                        "quantum_graph": QuantumGraphConfig(
                            input_collections=[config.collections.defaults]
                        )
                    }
                ),
                tags={"rc2/tract": tract},
            )
        )
    if not requests:
        return dg.SkipReason("no tract has new, complete ingest")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(handled, sort_keys=True))
