"""The sensor that registers the survey's tracts as partitions as soon as the code loads.

The tract dimension of the partitioned assets is dynamic. The ``skymap`` asset adds the
survey's tracts when it runs; until then a fresh ``dagster dev`` showed no partitions at
all. ``tract_partitions_sensor`` (running by default) reads the survey's
``bootstrap.yaml`` and adds the tracts it lists that are not partitions yet, so the
launch dialogs and backfills show every ``band|tract`` partition from the first tick.
"""

import dagster as dg

from rc2_platform.defs.partitions import tract_partitions
from rc2_platform.defs.resources import SurveyResource
from rc2_platform.errors import Rc2Error

__all__ = ["tract_partitions_sensor"]


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Adds the survey's tracts (bootstrap.yaml `tracts:`) as partitions of the tract "
        "dimension, so they exist before the skymap asset first runs."
    ),
)
def tract_partitions_sensor(
    context: dg.SensorEvaluationContext, survey: SurveyResource
) -> dg.SensorResult | dg.SkipReason:
    """Add the configured tracts that are not partitions yet."""
    try:
        config = survey.load()
    except (Rc2Error, OSError, ValueError) as exc:
        return dg.SkipReason(
            f"survey config {survey.bootstrap_config} unreadable ({exc}); set RC2_BOOTSTRAP "
            "to a bootstrap.yaml written by `rc2 simulate`"
        )
    known = set(context.instance.get_dynamic_partitions(tract_partitions.name or "tracts"))
    new = [str(t) for t in config.tracts if str(t) not in known]
    if not new:
        return dg.SkipReason("every configured tract is a partition")
    return dg.SensorResult(dynamic_partitions_requests=[tract_partitions.build_add_request(new)])
