"""Asset checks on ``deepCoadd_forced_src``, per tract × band partition.

Structural checks (``outputs_registered``, ``files_on_disk``, ``catalogs_non_empty``,
``no_failed_quanta``; blocking) and validation checks against the repository's
``truth_catalog`` (``photometric_median_offset``, ``photometric_scatter``,
``astrometric_scatter``, ``completeness``; bounds from :class:`ValidationResource`). The
logic is :mod:`rc2_platform.monitor.checks`.

The execution job evaluates them at its end, in ``materialize_outputs``, for every band
partition of the run (an ``AssetCheckEvaluation`` per check and partition: a range run
cannot return per-partition ``AssetCheckResult``s). ``deepCoadd_forced_src_checks``
evaluates them again on their own ("Execute checks" of a partition in the UI) from the
RUN its newest materialization names.
"""

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import dagster as dg

from rc2_platform.defs.partitions import tract_band_partitions
from rc2_platform.defs.resources import ButlerResource, ValidationResource
from rc2_platform.execution.execution_config import load_execution_config
from rc2_platform.monitor.checks import (
    STRUCTURAL_CHECKS,
    VALIDATION_CHECKS,
    CheckOutcome,
    tract_checks,
)

__all__ = ["CHECKED_ASSET", "CHECK_SPECS", "deepCoadd_forced_src_checks", "log_check_outcomes"]

CHECKED_ASSET = dg.AssetKey("deepCoadd_forced_src")
_DESCRIPTIONS = {
    "outputs_registered": "Every expected output dataset of the band is registered.",
    "files_on_disk": "Every registered output dataset of the band has its file.",
    "catalogs_non_empty": "No catalog of the band is empty.",
    "no_failed_quanta": "No quantum of the band failed or is blocked.",
    "photometric_median_offset": "|median(measured - truth)| of bright stars within bound.",
    "photometric_scatter": "Robust scatter of measured - truth magnitudes within bound.",
    "astrometric_scatter": "Robust per-coordinate position scatter within bound.",
    "completeness": "Matched fraction of truth stars to the depth magnitude above bound.",
}
CHECK_SPECS = [
    dg.AssetCheckSpec(
        name,
        asset=CHECKED_ASSET,
        description=_DESCRIPTIONS[name],
        blocking=name in STRUCTURAL_CHECKS,
        partitions_def=tract_band_partitions,
    )
    for name in (*STRUCTURAL_CHECKS, *VALIDATION_CHECKS)
]


def _value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return dg.MetadataValue.json(value)
    return value


def log_check_outcomes(
    context: dg.OpExecutionContext,
    tract: str,
    outcomes: Mapping[str, Iterable[CheckOutcome]],
    extra: Mapping[str, Any] | None = None,
) -> int:
    """Log one ``AssetCheckEvaluation`` per check and band partition; return the failures."""
    failed = 0
    for band, band_outcomes in outcomes.items():
        for outcome in band_outcomes:
            failed += not outcome.passed
            metadata = {k: _value(v) for k, v in outcome.metadata.items() if v is not None}
            # log_event accepts check evaluations (typed narrower in 1.13).
            context.log_event(
                dg.AssetCheckEvaluation(  # type: ignore[arg-type]
                    asset_key=CHECKED_ASSET,
                    check_name=outcome.name,
                    passed=outcome.passed,
                    metadata={"result": outcome.description, **metadata, **(extra or {})},
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=outcome.description,
                    partition=f"{band}|{tract}",
                )
            )
    return failed


def _newest(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str
) -> Mapping[str, Any] | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    return records[0].asset_materialization.metadata


@dg.multi_asset_check(
    specs=CHECK_SPECS,
    name="deepCoadd_forced_src_checks",
    can_subset=True,
    description="Re-evaluate the structural and validation checks of tract × band partitions.",
)
def deepCoadd_forced_src_checks(
    context: dg.AssetCheckExecutionContext, butler: ButlerResource, validation: ValidationResource
) -> Iterator[dg.AssetCheckResult]:
    """Evaluate the checks of the run's partitions from the RUN they were executed into.

    Results go out as per-partition evaluations (logged); no partition-less result."""
    op = context.op_execution_context
    keys = op.partition_keys if op.has_partition_key_range or op.has_partition_key else []
    by_tract: dict[str, list[str]] = {}
    for key in keys:
        dims = tract_band_partitions.get_partition_key_from_str(str(key)).keys_by_dimension
        by_tract.setdefault(dims["tract"], []).append(dims["band"])
    for tract, bands in sorted(by_tract.items()):
        mat = _newest(op.instance, CHECKED_ASSET, f"{bands[0]}|{tract}")
        graph = _newest(op.instance, dg.AssetKey("quantum_graph"), tract)
        if mat is None or graph is None or "RUN" not in mat or "path" not in graph:
            context.log.warning(f"tract {tract}: no deepCoadd_forced_src materialization to check")
            continue
        outcomes = tract_checks(
            butler.root, str(mat["RUN"].value), str(graph["path"].value), tract, bands,
            ("calexp", "deepCoadd", "deepCoadd_ref", "deepCoadd_forced_src"),
            load_execution_config(), validation.config(),
        )  # fmt: skip
        log_check_outcomes(op, tract, outcomes)
    yield from ()
