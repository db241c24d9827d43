"""Ingest steps as software-defined assets.

Lineage: instrument → raws → visits; skymap → bright_object_masks; raws → refcat_shards;
instrument → calibrations. raws, visits and bright_object_masks are partitioned by
tract × band: materializing ``g|9615`` ingests exactly that tract and band. Every step is
a call into :mod:`rc2_platform.ingest`; this module only wires them.
"""

from typing import Any

import dagster as dg

from rc2_platform.defs.executor import REGISTRY_POOL
from rc2_platform.defs.partitions import tract_band_of, tract_band_partitions, tract_partitions
from rc2_platform.defs.resources import ButlerResource, SurveyResource

GROUP = "ingest"


def ingest_metadata(result: Any) -> dict[str, Any]:
    """Materialization metadata of one ingest step (counts, collection, failures)."""
    meta: dict[str, Any] = {
        "collection": result.collection,
        "ingested": dg.MetadataValue.int(result.ingested),
        "skipped": dg.MetadataValue.int(result.skipped),
        "failed": dg.MetadataValue.int(len(result.failed)),
        "seconds": dg.MetadataValue.float(round(float(result.seconds), 3)),
    }
    if result.failed:
        rows = "\n".join(f"| {what} | {why} |" for what, why in result.failed[:50])
        more = f"\n\n(and {len(result.failed) - 50} more)" if len(result.failed) > 50 else ""
        meta["failures"] = dg.MetadataValue.md(
            f"| file / data ID | reason |\n|---|---|\n{rows}{more}"
        )
    return meta


def _report(context: dg.AssetExecutionContext, result: Any) -> dg.MaterializeResult:
    for what, why in result.failed[:20]:
        context.log.warning(f"{result.step}: {what}: {why}")
    return dg.MaterializeResult(metadata=ingest_metadata(result))


@dg.asset(group_name=GROUP, kinds={"sqlalchemy"}, pool=REGISTRY_POOL)
def instrument(
    context: dg.AssetExecutionContext, butler: ButlerResource, survey: SurveyResource
) -> dg.MaterializeResult:
    """The HSC-like instrument: its detectors, physical filters and bands."""
    from rc2_platform import ingest

    config = survey.load()
    with butler.open() as repo:
        return _report(context, ingest.register_instrument(repo, name=config.instrument))


@dg.asset(group_name=GROUP, kinds={"sqlalchemy"}, pool=REGISTRY_POOL)
def skymap(
    context: dg.AssetExecutionContext, butler: ButlerResource, survey: SurveyResource
) -> dg.MaterializeResult:
    """The rings sky map: every tract and patch, and the survey's tracts as partitions."""
    from rc2_platform import ingest

    config = survey.load()
    with butler.open() as repo:
        tracts = None if config.skymap.scope == "all" else config.tracts
        result = ingest.register_skymap(
            repo,
            config.skymap.name,
            config.skymap.config,
            tracts=tracts,
            run=config.collections.skymaps,
        )
    new = [
        str(t)
        for t in config.tracts
        if not context.instance.has_dynamic_partition("tracts", str(t))
    ]
    if new:
        context.instance.add_dynamic_partitions(tract_partitions.name or "tracts", new)
        context.log.info(f"registered tract partitions {new}")
    return _report(context, result)


@dg.asset(group_name=GROUP, deps=[instrument], kinds={"sqlalchemy"}, pool=REGISTRY_POOL)
def calibrations(
    context: dg.AssetExecutionContext, butler: ButlerResource, survey: SurveyResource
) -> dg.MaterializeResult:
    """Master bias, dark and flat frames, certified with their validity ranges."""
    from rc2_platform import ingest

    config = survey.load()
    with butler.open() as repo:
        result = ingest.ingest_calibrations(
            repo,
            config.calibrations,
            run=config.collections.calib_run,
            collection=config.collections.calib,
        )
    return _report(context, result)


@dg.asset(
    group_name=GROUP,
    deps=[instrument, skymap],
    partitions_def=tract_band_partitions,
    kinds={"sqlalchemy"},
    pool=REGISTRY_POOL,
)
def raws(
    context: dg.AssetExecutionContext, butler: ButlerResource, survey: SurveyResource
) -> dg.MaterializeResult:
    """Raw exposures of one band whose detectors overlap one tract."""
    from rc2_platform import ingest

    tract, band = tract_band_of(context)
    config = survey.load()
    with butler.open() as repo:
        result = ingest.ingest_raws(
            repo,
            list(config.raws.iter_files()),
            run=config.collections.raw,
            transfer=config.raws.transfer,
            tracts=[tract],
            bands=[band],
            skymap=config.skymap.name,
        )
    return _report(context, result)


@dg.asset(
    group_name=GROUP,
    deps=[raws],
    partitions_def=tract_band_partitions,
    kinds={"sqlalchemy"},
    pool=REGISTRY_POOL,
)
def visits(
    context: dg.AssetExecutionContext, butler: ButlerResource, survey: SurveyResource
) -> dg.MaterializeResult:
    """Visits of one band over one tract, with detector regions and their overlaps."""
    from rc2_platform import ingest

    tract, band = tract_band_of(context)
    config = survey.load()
    with butler.open() as repo:
        result = ingest.define_visits(repo, tracts=[tract], bands=[band], skymap=config.skymap.name)
    return _report(context, result)


@dg.asset(group_name=GROUP, deps=[raws], kinds={"sqlalchemy"}, pool=REGISTRY_POOL)
def refcat_shards(
    context: dg.AssetExecutionContext, butler: ButlerResource, survey: SurveyResource
) -> dg.MaterializeResult:
    """Reference-catalog shards (htm7) overlapping the ingested raws."""
    from rc2_platform import ingest

    config = survey.load()
    if config.refcat is None:
        return dg.MaterializeResult(
            metadata={"ingested": 0, "note": "no reference catalog configured"}
        )
    with butler.open() as repo:
        result = ingest.ingest_refcats(
            repo, config.refcat.shards, name=config.refcat.name, run=config.collections.refcats
        )
    return _report(context, result)


@dg.asset(
    group_name=GROUP,
    deps=[skymap, visits],
    partitions_def=tract_band_partitions,
    kinds={"sqlalchemy"},
    pool=REGISTRY_POOL,
)
def bright_object_masks(
    context: dg.AssetExecutionContext, butler: ButlerResource, survey: SurveyResource
) -> dg.MaterializeResult:
    """Bright-object masks of the tract's patches that overlap ingested raws."""
    from rc2_platform import ingest

    tract, _band = tract_band_of(context)
    config = survey.load()
    with butler.open() as repo:
        result = ingest.ingest_bright_object_masks(
            repo,
            [m for m in config.masks if m.tract == tract],
            run=config.collections.masks,
        )
        ingest.register_default_chain(repo, config.collections)
    return _report(context, result)


@dg.asset(group_name=GROUP, deps=[instrument], kinds={"sqlalchemy"}, pool=REGISTRY_POOL)
def truth_catalog(
    context: dg.AssetExecutionContext, butler: ButlerResource, survey: SurveyResource
) -> dg.MaterializeResult:
    """The simulation's truth catalog (dataset ``truth_catalog`` in RUN ``<instrument>/truth``),
    which validation and the asset checks read; nothing for a survey without one."""
    from rc2_platform import ingest

    config = survey.load()
    with butler.open() as repo:
        return _report(
            context, ingest.ingest_truth(repo, config.truth, instrument=config.instrument)
        )


ingest_assets = [
    instrument,
    skymap,
    calibrations,
    raws,
    visits,
    refcat_shards,
    bright_object_masks,
    truth_catalog,
]
