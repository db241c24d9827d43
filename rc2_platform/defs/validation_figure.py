"""The validation figure of a tract as an asset of its own, drawn by a follow-up run.

``validation_figure`` (partitioned by tract, group ``validation``) reads the RUN that the
newest ``deepCoadd_forced_src`` materialization of the tract names and draws
``rc2 validate``'s figure (residuals per band, completeness, the coverage map of the
tract's patches, the metric table) into ``REPO/_runs/<RUN>/validation_tract<T>.png``; its
metadata has the path and an inline preview, so the asset page shows the figure.

It is not part of ``execution_job``: drawing it (matplotlib import, layout, PNG) is
~3 CPU-s that the execution run would otherwise spend after its last quantum.
``validation_figure_sensor`` requests one ``validation_figure_job`` run per tract and
execution run as soon as that run has materialized the tract's ``deepCoadd_forced_src``
partitions. The asset checks stay in the execution run (they need the metrics, not the
figure). Library call: ``monitor.checks.validate_tract(repo, run, tract, config, png)``.
"""

import base64
import io
from pathlib import Path

import dagster as dg

from rc2_platform.defs.checks import CHECKED_ASSET
from rc2_platform.defs.partitions import BANDS, to_tract, tract_band_partitions, tract_partitions
from rc2_platform.defs.resources import ButlerResource, ValidationResource

__all__ = [
    "figure_preview",
    "validation_figure",
    "validation_figure_job",
    "validation_figure_request",
    "validation_figure_sensor",
]

GROUP = "validation"


def figure_preview(path: Path, width: int = 1000) -> dg.MarkdownMetadataValue | None:
    """The figure scaled to ``width`` pixels, inline (a data URI) so the asset page shows it."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            height = max(1, round(image.height * width / image.width))
            small = image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
            small = small.quantize(colors=64)  # a figure of few colours: ~4x smaller
            buffer = io.BytesIO()
            small.save(buffer, format="PNG", optimize=True)
    except OSError:
        return None
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return dg.MetadataValue.md(f"![validation figure of {path.name}](data:image/png;base64,{data})")


def _newest_run_of(instance: dg.DagsterInstance, tract: str) -> str | None:
    """The RUN of the tract's newest ``deepCoadd_forced_src`` materialization (any band)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=CHECKED_ASSET, asset_partitions=[f"{band}|{tract}" for band in BANDS]
        ),
        limit=1,
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    run = records[0].asset_materialization.metadata.get("RUN")
    return None if run is None else str(run.value)


@dg.asset(
    group_name=GROUP,
    partitions_def=tract_partitions,
    deps=[dg.AssetDep(CHECKED_ASSET, partition_mapping=to_tract)],
    kinds={"python"},
)
def validation_figure(
    context: dg.AssetExecutionContext, butler: ButlerResource, validation: ValidationResource
) -> dg.MaterializeResult:
    """``rc2 validate``'s figure of the tract's newest ``deepCoadd_forced_src`` RUN
    (residuals, completeness, coverage map, metric table), shown on the asset page."""
    from rc2_platform.execution.journal import run_directory
    from rc2_platform.monitor.checks import validate_tract
    from rc2_platform.validate.report import ValidationError

    tract = str(context.partition_key)
    run = _newest_run_of(context.instance, tract)
    if run is None:
        raise dg.Failure(
            f"tract {tract} has no deepCoadd_forced_src materialization naming a RUN: "
            "execute the tract (execution_job) first"
        )
    png = run_directory(butler.root, run) / f"validation_tract{tract}.png"
    try:
        report = validate_tract(butler.root, run, tract, validation.config(), png=png)
    except (ValidationError, KeyError) as exc:
        raise dg.Failure(f"tract {tract}, RUN {run}: no validation figure: {exc}") from exc
    passed = sum(m.passed for m in report.metrics)
    metadata: dict[str, object] = {
        "RUN": run,
        "validation figure": dg.MetadataValue.path(str(png)),
        "metrics passed": f"{passed} of {len(report.metrics)}",
    }
    preview = figure_preview(png)
    if preview is not None:
        metadata["validation figure (preview)"] = preview
    return dg.MaterializeResult(metadata=metadata)  # type: ignore[arg-type]


validation_figure_job = dg.define_asset_job(
    "validation_figure_job",
    selection=dg.AssetSelection.assets(validation_figure),
    partitions_def=tract_partitions,
    description="Draw the validation figure of one tract (a follow-up of its execution run).",
    # One step: a step process (fork server, preloads) would only add its start-up.
    executor_def=dg.in_process_executor,
)


def validation_figure_request(tract: str, run_id: str) -> dg.RunRequest:
    """The run drawing one tract's figure after the Dagster run ``run_id`` materialized it."""
    return dg.RunRequest(run_key=f"figure-{tract}-{run_id}", partition_key=tract)


@dg.sensor(
    job=validation_figure_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Draws the validation figure of each tract whose deepCoadd_forced_src partitions a "
        "run materialized: one validation_figure_job run per tract and execution run."
    ),
)
def validation_figure_sensor(
    context: dg.SensorEvaluationContext,
) -> dg.SensorResult | dg.SkipReason:
    """Request one figure run per (tract, Dagster run) materialized since the cursor."""
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=CHECKED_ASSET, after_storage_id=after),
        limit=1000,
        ascending=True,
    ).records
    if not records:
        return dg.SkipReason("no new deepCoadd_forced_src materialization")
    seen: dict[tuple[str, str], None] = {}
    for record in records:
        if record.partition_key:
            dims = tract_band_partitions.get_partition_key_from_str(record.partition_key)
            tract = dims.keys_by_dimension["tract"]
            seen[(tract, record.run_id or str(record.storage_id))] = None
    requests = [validation_figure_request(tract, run_id) for tract, run_id in seen]
    return dg.SensorResult(run_requests=requests, cursor=str(max(r.storage_id for r in records)))
