"""Dagster definitions of rc2_platform: the only package that imports dagster.

``dagster dev -w workspace.yaml`` loads :data:`defs`. Assets wrap the ingest, graph and
execution library calls; see ``docs/dagster.md``.
"""

from __future__ import annotations

import dagster as dg

from rc2_platform.defs.checks import deepCoadd_forced_src_checks
from rc2_platform.defs.execution_assets import execution_job, execution_resources, pipeline_outputs
from rc2_platform.defs.execution_sensor import execution_sensor
from rc2_platform.defs.executor import rc2_executor
from rc2_platform.defs.graph_assets import quantum_graph, quantum_graph_job, quantum_graph_sensor
from rc2_platform.defs.ingest_assets import ingest_assets
from rc2_platform.defs.resources import ButlerResource, SurveyResource, ValidationResource
from rc2_platform.defs.schedules import monthly_reprocessing
from rc2_platform.defs.tract_sensor import tract_partitions_sensor
from rc2_platform.defs.validation_figure import (
    validation_figure,
    validation_figure_job,
    validation_figure_sensor,
)

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("ingest"),
    description="Ingest one tract × band partition (and the unpartitioned ingest assets).",
)


def build_definitions(
    butler: ButlerResource | None = None, survey: SurveyResource | None = None
) -> dg.Definitions:
    """The Definitions, with resources overridable (tests point them at temporary folders)."""
    return dg.Definitions(
        assets=[*ingest_assets, quantum_graph, pipeline_outputs, validation_figure],
        asset_checks=[deepCoadd_forced_src_checks],
        jobs=[ingest_job, quantum_graph_job, execution_job, validation_figure_job],
        sensors=[
            tract_partitions_sensor,
            quantum_graph_sensor,
            execution_sensor,
            validation_figure_sensor,
        ],
        schedules=[monthly_reprocessing],
        executor=rc2_executor,
        resources={
            "butler": butler or ButlerResource(),
            "survey": survey or SurveyResource(),
            "validation": ValidationResource(),
            **execution_resources(),
        },
    )


defs = build_definitions()

__all__ = ["build_definitions", "defs", "ingest_job"]
