"""``ingest_truth``: the simulation's truth catalog as dataset ``truth_catalog``.

A simulated survey writes ``truth.fits`` (every object with its true position, star flag
and magnitudes). Every bootstrap route (``rc2 bootstrap``, ``rc2 demo``, the Dagster
``truth_catalog`` asset) ingests it as ``truth_catalog(instrument) [SourceCatalog]`` into
RUN ``<instrument>/truth``, so validation finds it in the repository
(:func:`find_truth`) and needs no ``--truth`` file.
"""

from __future__ import annotations

from pathlib import Path

from rc2_platform.butler import Butler, FileDataset
from rc2_platform.core import DatasetIdGenMode, DatasetRef
from rc2_platform.errors import Rc2Error
from rc2_platform.ingest._common import (
    IngestResult,
    dataset_type_for,
    drop_run_if_empty,
    ingest_isolating,
    timed,
)

__all__ = ["TRUTH_DATASET", "find_truth", "ingest_truth", "truth_run"]

#: Dataset type name of the truth catalog.
TRUTH_DATASET = "truth_catalog"


def truth_run(instrument: str) -> str:
    """The RUN holding an instrument's truth catalog, e.g. ``HSC/truth``."""
    return f"{instrument}/truth"


def ingest_truth(
    butler: Butler, path: str | Path | None, *, instrument: str, transfer: str = "copy"
) -> IngestResult:
    """Ingest the truth catalog file ``path`` (nothing when None: a real survey has none).

    Re-running is a no-op (the dataset ID is derived from the data ID and RUN).
    """
    run = truth_run(instrument)
    result = IngestResult("truth", collection=run)
    with timed(result):
        if path is None:
            return result
        path = Path(path)
        if not path.is_file():
            result.failed.append((str(path), "truth catalog file does not exist"))
            return result
        reg = butler.registry
        dt = dataset_type_for(reg.universe, TRUTH_DATASET, ["instrument"], "SourceCatalog")
        reg.register_dataset_type(dt)
        created = reg.register_run(run)
        ref = DatasetRef.make(
            dt,
            reg.universe.data_id({"instrument": instrument}, dt.dimensions),
            run,
            DatasetIdGenMode.DATAID_TYPE_RUN,
        )
        ingest_isolating(butler, [FileDataset(path, ref)], transfer, result)
        drop_run_if_empty(butler, run, created)
    return result


def find_truth(butler: Butler) -> Path | None:
    """The file of the repository's truth catalog (the first instrument's), if ingested."""
    try:
        refs = [
            ref
            for instrument in sorted(
                str(r["instrument"]) for r in butler.query_dimension_records("instrument")
            )
            for ref in butler.query_datasets(TRUTH_DATASET, collections=truth_run(instrument))
        ]
        records = butler.datastore_records(refs[:1])
    except Rc2Error:
        return None
    if not records:
        return None
    return Path(butler.datastore.root) / next(iter(records.values())).path
