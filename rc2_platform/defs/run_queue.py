"""The run coordinator of rc2 instances: Dagster's queue, with ``rc2/tract`` set before it.

Dagster's run queue limits runs by the tags they carry when they are queued. Sensor and
schedule runs name their tract (``rc2/tract``) from the start, but a run launched from the
UI, an asset backfill's run or a job launched over a partition range carries only
Dagster's partition tags: ``dagster/partition`` (``9615`` or ``g|9615``), the dimension
tags ``dagster/partition/tract`` of a multi-partition key, or the range
``dagster/asset_partition_range_start/end`` (``g|9615``, ``y|9615``).

:class:`TractRunCoordinator` is :class:`dagster.QueuedRunCoordinator` whose ``submit_run``
first derives the run's tracts from those tags (:func:`tracts_from_tags`; a range's tracts
in the order of the ``tracts`` dynamic partitions) and adds ``rc2/tract`` (comma-separated
when several) to the run, then queues it. The queue's
``tag_concurrency_limits`` rule on ``rc2/tract`` (``applyLimitPerUniqueValue``, limit 1)
thus holds for every run submitted through the instance: UI launches, backfills, sensors,
schedules, re-executions. Selected in ``dagster.yaml`` as ``run_coordinator: {module:
rc2_platform.defs.run_queue, class: TractRunCoordinator}``; the webserver and daemon then
import this package.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import dagster as dg

__all__ = ["TRACT_TAG", "TractRunCoordinator", "tracts_from_tags"]

#: The run tag naming the tract(s) a run touches (comma-separated).
TRACT_TAG = "rc2/tract"
#: The dynamic partitions definition holding the tracts (``partitions.tract_partitions``).
TRACTS = "tracts"

_PARTITION = "dagster/partition"
_TRACT_DIMENSION = "dagster/partition/tract"
_RANGE_START = "dagster/asset_partition_range_start"
_RANGE_END = "dagster/asset_partition_range_end"


def _tract_of_key(key: str) -> str:
    """The tract of a partition key: ``9615`` (tract) or ``g|9615`` (band|tract)."""
    return key.rsplit("|", 1)[-1]


def tracts_from_tags(
    tags: Mapping[str, str], known_tracts: Callable[[], Sequence[str]]
) -> list[str]:
    """The tracts a run touches, from its partition tags; [] for an unpartitioned run.

    ``known_tracts`` gives the tract partitions in their order (only called for a range
    over several tracts: ``g|9615...y|9813`` covers every tract from 9615 to 9813).
    """
    if TRACT_TAG in tags:
        return [t for t in tags[TRACT_TAG].split(",") if t]
    if _TRACT_DIMENSION in tags:
        return [tags[_TRACT_DIMENSION]]
    if _RANGE_START in tags and _RANGE_END in tags:
        first, last = _tract_of_key(tags[_RANGE_START]), _tract_of_key(tags[_RANGE_END])
        if first == last:
            return [first]
        order = list(known_tracts())
        if first in order and last in order:
            lo, hi = sorted((order.index(first), order.index(last)))
            return order[lo : hi + 1]
        return sorted({first, last})
    key = tags.get(_PARTITION)
    if key is not None and _tract_of_key(key) in known_tracts():
        return [_tract_of_key(key)]
    return []


class TractRunCoordinator(dg.QueuedRunCoordinator):
    """``QueuedRunCoordinator`` that tags each run with its tracts before queueing it.

    Same config as ``QueuedRunCoordinator`` (the limits themselves are in the instance's
    ``concurrency:`` section); see the module docstring.
    """

    def submit_run(self, context: dg.SubmitRunContext) -> dg.DagsterRun:
        """Add ``rc2/tract`` (when the run touches tracts and lacks it), then queue the run."""
        run = context.dagster_run
        if TRACT_TAG not in run.tags:
            instance = self._instance
            tracts = tracts_from_tags(run.tags, lambda: instance.get_dynamic_partitions(TRACTS))
            if tracts:
                new = {TRACT_TAG: ",".join(tracts)}
                instance.add_run_tags(run.run_id, new)
                run = run.with_tags({**run.tags, **new})
                context = dg.SubmitRunContext(run, context.workspace)
        return super().submit_run(context)
