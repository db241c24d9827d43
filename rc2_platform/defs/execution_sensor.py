"""The sensor that executes each new QuantumGraph: one execution run per tract.

It reads ``quantum_graph`` materializations newer than its cursor (a storage id) and
requests one ``execution_job`` run per tract, over the partition range of the tract's
bands (``g|T ... y|T``, the tags ``dagster/asset_partition_range_start/end`` that asset
jobs honour in Dagster 1.13). The run key names the materialization, so a graph is
executed once even when the sensor is re-evaluated. Every request carries ``rc2/tract``
and, when the graph was built by the monthly schedule, its ``rc2/reprocessing`` tag.

Unlike ``@asset_sensor`` (which hands over only the newest event per tick), it requests a
run for every tract materialized since the last tick — the monthly schedule builds all
tracts' graphs at once.
"""

import dagster as dg

from rc2_platform.defs.execution_assets import TRACT_TAG, execution_job
from rc2_platform.defs.graph_assets import quantum_graph
from rc2_platform.defs.partitions import tract_range_keys

__all__ = ["REPROCESSING_TAG", "execution_run_request", "execution_sensor"]

#: The monthly schedule's tag (its date), carried from the graph run to the execution run.
REPROCESSING_TAG = "rc2/reprocessing"

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def execution_run_request(
    tract: str, storage_id: int | None = None, extra_tags: dict[str, str] | None = None
) -> dg.RunRequest:
    """The run request executing one tract's graph (all bands in one run)."""
    start, end = tract_range_keys(tract)
    key = f"execute-{tract}-{storage_id}" if storage_id is not None else None
    return dg.RunRequest(
        run_key=key,
        tags={
            **(extra_tags or {}),
            RANGE_START_TAG: start,
            RANGE_END_TAG: end,
            TRACT_TAG: str(tract),
        },
    )


@dg.sensor(
    job=execution_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Executes each new quantum_graph materialization: one execution_job run per tract "
        "over the tract's bands; the cursor (a storage id) makes every graph run once."
    ),
)
def execution_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """Request one execution run per tract whose graph was (re)built since the cursor."""
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=quantum_graph.key, after_storage_id=after),
        limit=1000,
        ascending=True,
    ).records
    if not records:
        return dg.SkipReason("no new quantum_graph materialization")
    newest: dict[str, tuple[int, str]] = {}
    for record in records:
        if record.partition_key:
            newest[record.partition_key] = (record.storage_id, record.run_id)
    requests = []
    for tract, (sid, run_id) in sorted(newest.items()):
        graph_run = context.instance.get_run_by_id(run_id) if run_id else None
        tags = graph_run.tags if graph_run is not None else {}
        carried = {REPROCESSING_TAG: tags[REPROCESSING_TAG]} if REPROCESSING_TAG in tags else {}
        requests.append(execution_run_request(tract, sid, carried))
    cursor = str(max(r.storage_id for r in records))
    return dg.SensorResult(run_requests=requests, cursor=cursor)
