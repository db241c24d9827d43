"""Shared pieces of the ingest steps: results, dataset types, record conversion."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rc2_platform.butler import Butler, FileDataset
from rc2_platform.core import CollectionType, DatasetType
from rc2_platform.errors import Rc2Error
from rc2_platform.registry.dimensions import DimensionUniverse

__all__ = [
    "IngestResult",
    "calibration_dataset_type",
    "dataset_type_for",
    "registry_record",
]

#: Default names (LSST vocabulary) of the dataset types the ingest steps create.
RAW = "raw"
SKYMAP = "skyMap"
MASK = "brightObjectMask"
CALIBRATION_TYPES = ("bias", "dark", "flat")


@dataclass
class IngestResult:
    """What one ingest step did.

    Attributes
    ----------
    step : str
        Step name, e.g. ``"raws"``.
    collection : str
        The collection written (RUN, CALIBRATION or CHAINED), or ``""``.
    ingested : int
        New datasets (or records, for record-only steps) written.
    skipped : int
        Items already present (re-runs are no-ops: everything is skipped).
    failed : list[tuple[str, str]]
        ``(file or data ID, reason)`` of every item that could not be ingested.
    rows : int
        Registry rows inserted (dimension records + datasets), for rows/s figures.
    seconds : float
        Wall-clock time of the step.
    """

    step: str
    collection: str = ""
    ingested: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for JSON output and Dagster metadata)."""
        return {
            "step": self.step,
            "collection": self.collection,
            "ingested": self.ingested,
            "skipped": self.skipped,
            "failed": len(self.failed),
            "failures": [{"item": i, "reason": r} for i, r in self.failed],
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
        }


@contextmanager
def timed(result: IngestResult) -> Iterator[IngestResult]:
    """Set ``result.seconds`` to the wall-clock time of the block."""
    t0 = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - t0


def dataset_type_for(
    universe: DimensionUniverse,
    name: str,
    dimensions: tuple[str, ...] | list[str],
    storage_class: str,
    is_calibration: bool = False,
) -> DatasetType:
    """A `DatasetType` with its dimensions reduced to the universe's required set, sorted."""
    return DatasetType(name, universe.required(dimensions), storage_class, is_calibration)


def calibration_dataset_type(universe: DimensionUniverse, name: str) -> DatasetType:
    """``bias``/``dark`` on (instrument, detector); ``flat`` also on physical_filter."""
    dims = ["instrument", "detector"] + (["physical_filter"] if name == "flat" else [])
    return dataset_type_for(universe, name, dims, "Exposure", is_calibration=True)


def raw_dataset_type(universe: DimensionUniverse) -> DatasetType:
    """``raw(instrument, detector, exposure) [Exposure]``."""
    return dataset_type_for(universe, RAW, ["instrument", "detector", "exposure"], "Exposure")


def registry_record(
    universe: DimensionUniverse, element: str, record: Mapping[str, Any]
) -> dict[str, Any]:
    """Convert a Gen3-style record (``name``/``id`` keys) to the registry's columns.

    ``name`` and ``id`` become the element's own key column; fields the universe does
    not define for the element are dropped (the instrument and sky map packages carry
    extra metadata that this universe does not store).
    """
    el = universe[element]
    allowed = set(el.columns)
    if el.has_region:
        allowed.add("region")
    if el.has_timespan:
        allowed.add("timespan")
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key in ("name", "id") and el.is_dimension:
            key = element
        if key in allowed:
            out[key] = value.hex() if isinstance(value, bytes) and key != "region" else value
    return out


def ensure_run(butler: Butler, run: str) -> bool:
    """Register RUN ``run`` if missing; True if it was created now."""
    return butler.registry.register_run(run)


def drop_run_if_empty(butler: Butler, run: str, created: bool) -> None:
    """Remove RUN ``run`` if this step ``created`` it and it holds no dataset.

    A failed ingest (every file refused, permission denied, ...) then leaves no empty
    RUN behind.
    """
    if not created:
        return
    reg = butler.registry
    for dt in reg.query_dataset_types():
        if reg.query_datasets(dt, [run], find_first=False):
            return
    butler.remove_collection(run)


def ingest_isolating(
    butler: Butler,
    datasets: Sequence[FileDataset],
    transfer: str,
    result: IngestResult,
    names: Mapping[Path, str] | None = None,
) -> None:
    """Ingest ``datasets`` in one transaction; if it fails, each alone, naming the bad ones.

    ``result`` gets the counts and one ``(file, reason)`` per failed dataset; ``names``
    maps a dataset's path to the name reported (default: the path).
    """
    if not datasets:
        return
    try:
        new = butler.ingest(datasets, transfer=transfer)
        result.ingested += len(new)
        result.skipped += len(datasets) - len(new)
        return
    except Rc2Error:
        pass
    for d in datasets:
        try:
            new = butler.ingest([d], transfer=transfer)
        except Rc2Error as exc:
            name = (names or {}).get(d.path, str(d.path))
            result.failed.append((name, f"{name}: {exc}" if name not in str(exc) else str(exc)))
            continue
        result.ingested += len(new)
        result.skipped += 1 - len(new)


def ensure_collection(butler: Butler, name: str, type: CollectionType) -> None:
    """Register collection ``name`` of ``type`` if missing."""
    butler.registry.register_collection(name, type)
