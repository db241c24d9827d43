"""The monthly reprocessing schedule: every tract into a new RUN named by the date."""

import dagster as dg

from rc2_platform.defs.graph_assets import QuantumGraphConfig, quantum_graph_job
from rc2_platform.defs.resources import SurveyResource


def monthly_run_name(date_text: str) -> str:
    """The RUN collection of a monthly reprocessing, e.g. ``HSC/runs/RC2/monthly/2026-12-01``."""
    return f"HSC/runs/RC2/monthly/{date_text}"


@dg.schedule(
    cron_schedule="0 0 1 * *",
    job=quantum_graph_job,
    execution_timezone="UTC",
    description=(
        "Monthly RC2 reprocessing: at 00:00 UTC on the 1st, build every tract's graph into "
        "a new RUN named by the date; the execution sensor then runs each tract."
    ),
)
def monthly_reprocessing(
    context: dg.ScheduleEvaluationContext, survey: SurveyResource
) -> list[dg.RunRequest] | dg.SkipReason:
    """One graph-generation run per known tract."""
    tracts = context.instance.get_dynamic_partitions("tracts")
    if not tracts:
        return dg.SkipReason("no tracts registered yet: materialize the skymap asset first")
    config = survey.load()
    date_text = context.scheduled_execution_time.strftime("%Y-%m-%d")
    run = monthly_run_name(date_text)
    return [
        dg.RunRequest(
            run_key=f"monthly-{date_text}-{tract}",
            partition_key=tract,
            run_config=dg.RunConfig(
                ops={
                    "quantum_graph": QuantumGraphConfig(
                        input_collections=[config.collections.defaults], output_run=run
                    )
                }
            ),
            tags={"rc2/tract": tract, "rc2/reprocessing": date_text},
        )
        for tract in sorted(tracts)
    ]
