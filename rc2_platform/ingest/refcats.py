"""``ingest_refcats``: reference-catalog shards (one file per HTM7 pixel)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rc2_platform.butler import Butler, FileDataset
from rc2_platform.core import DatasetIdGenMode, DatasetRef
from rc2_platform.ingest._common import (
    IngestResult,
    dataset_type_for,
    drop_run_if_empty,
    ingest_isolating,
    timed,
)
from rc2_platform.ingest._overlap_sets import covered
from rc2_platform.ingest.bootstrap_config import RefcatShard

__all__ = ["ingest_refcats"]

NO_VISITS = (
    "no visit_detector_region exists to select overlapping shards: run define-visits "
    "first, or pass only_overlapping=False (--all)"
)


def ingest_refcats(
    butler: Butler,
    shards: Sequence[RefcatShard],
    *,
    name: str = "synth_refcat",
    run: str = "refcats",
    only_overlapping: bool = True,
    transfer: str = "copy",
) -> IngestResult:
    """Ingest reference-catalog shards as dataset type ``name(htm7) [SimpleCatalog]``.

    Parameters
    ----------
    butler : Butler
        The repository.
    shards : sequence of RefcatShard
        ``(htm7, file)`` pairs.
    name : str
        Dataset type name of the catalog (the pipeline's ``ref_cat`` connection).
    run : str
        RUN collection.
    only_overlapping : bool
        Only shards whose pixel overlaps an ingested raw's detector region (through the
        materialized ``visit_detector_region x htm7`` overlaps; visits must be defined).
    transfer : str
        Datastore transfer mode.

    Returns
    -------
    IngestResult
        Shards outside the raws' footprint are neither ingested nor counted.
    """
    result = IngestResult("refcats", collection=run)
    with timed(result):
        if not shards:
            return result
        if only_overlapping:
            pixels = covered(butler, "htm7", ["htm7"])
            if pixels is None:
                result.failed.append((name, NO_VISITS))
                return result
            shards = [s for s in shards if (s.htm7,) in pixels]
        reg = butler.registry
        dt = dataset_type_for(reg.universe, name, ["htm7"], "SimpleCatalog")
        reg.register_dataset_type(dt)
        created = reg.register_run(run)
        datasets = [
            FileDataset(
                Path(s.file),
                DatasetRef.make(
                    dt,
                    reg.universe.data_id({"htm7": s.htm7}, dt.dimensions),
                    run,
                    DatasetIdGenMode.DATAID_TYPE_RUN,
                ),
            )  # fmt: skip
            for s in shards
        ]
        ingest_isolating(butler, datasets, transfer, result)
        drop_run_if_empty(butler, run, created)
        result.rows = 2 * result.ingested
    return result
