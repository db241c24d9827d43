"""``ingest_calibrations``: master bias/dark/flat files into RUNs, certified with validity.

Transactions: one per *validity group* (dataset type + validity range, i.e. one
calibration epoch of one type): its files are ingested and certified together or not at
all. If a group fails (e.g. its validity overlaps an existing certification), each of
its entries is retried alone so only the offending ones are reported. Overlaps inside
the given entries are detected before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from astropy.time import Time

from rc2_platform.butler import Butler, FileDataset
from rc2_platform.core import CollectionType, DatasetIdGenMode, DatasetRef, Timespan
from rc2_platform.errors import CalibrationConflictError, Rc2Error
from rc2_platform.ingest._common import IngestResult, calibration_dataset_type, timed
from rc2_platform.ingest.bootstrap_config import CalibrationEntry

__all__ = ["calibration_run", "ingest_calibrations", "validity"]


def validity(entry: CalibrationEntry) -> Timespan:
    """The entry's validity range as a TAI `Timespan` (missing ends are unbounded)."""

    def t(value: str | None) -> Time | None:
        return None if value is None else Time(value, format="isot", scale="tai")

    return Timespan.from_times(t(entry.valid_begin), t(entry.valid_end))


def calibration_run(prefix: str, entry: CalibrationEntry) -> str:
    """RUN of an entry: ``<prefix>/<YYYYMMDD of valid_begin>`` (``.../unbounded``)."""
    if entry.valid_begin is None:
        return f"{prefix}/unbounded"
    stamp = entry.valid_begin.replace("-", "").replace(":", "")
    stamp = stamp.split(".")[0]
    return f"{prefix}/{stamp.removesuffix('T000000')}"


def _key(entry: CalibrationEntry) -> tuple[str, int, str | None]:
    return (entry.dataset_type, entry.detector, entry.physical_filter)


def _describe(entry: CalibrationEntry) -> str:
    filt = f", physical_filter {entry.physical_filter}" if entry.physical_filter else ""
    return f"{entry.dataset_type} (detector {entry.detector}{filt})"


def _check_overlaps(
    entries: Sequence[CalibrationEntry], failed: list[tuple[str, str]]
) -> list[CalibrationEntry]:
    """Drop entries overlapping an earlier entry of the same type and data ID."""
    kept: dict[tuple[str, int, str | None], list[tuple[Timespan, CalibrationEntry]]] = {}
    out = []
    for entry in entries:
        ts = validity(entry)
        clash = next((e for t, e in kept.get(_key(entry), []) if t.overlaps(ts)), None)
        if clash is not None:
            err = CalibrationConflictError(
                f"{_describe(entry)} in {entry.file}: validity {ts} overlaps that of "
                f"{clash.file} ({validity(clash)}); fix the validity ranges in the manifest"
            )
            failed.append((str(entry.file), str(err)))
            continue
        kept.setdefault(_key(entry), []).append((ts, entry))
        out.append(entry)
    return out


def _ingest_group(
    butler: Butler,
    entries: Sequence[CalibrationEntry],
    run: str,
    collection: str,
    instrument: str,
    transfer: str,
) -> int:
    reg = butler.registry
    dt = calibration_dataset_type(reg.universe, entries[0].dataset_type)
    ts = validity(entries[0])
    datasets = []
    for e in entries:
        values = {"instrument": instrument, "detector": e.detector}
        if e.physical_filter:
            values["physical_filter"] = e.physical_filter
        data_id = reg.universe.data_id(values, dt.dimensions)
        ref = DatasetRef.make(dt, data_id, run, DatasetIdGenMode.DATAID_TYPE_RUN)
        datasets.append(FileDataset(Path(e.file), ref))
    with butler.transaction():
        reg.register_run(run)
        new = butler.ingest(datasets, transfer=transfer)
        if new:
            reg.certify(collection, new, ts)
    return len(new)


def ingest_calibrations(
    butler: Butler,
    entries: Sequence[CalibrationEntry],
    *,
    run: str | None = None,
    collection: str = "HSC/calib",
    instrument: str = "HSC",
    transfer: str = "copy",
) -> IngestResult:
    """Ingest master calibrations and certify them into a CALIBRATION collection.

    Parameters
    ----------
    butler : Butler
        The repository (instrument registered).
    entries : sequence of CalibrationEntry
        Files with dataset type, detector, physical filter (flats) and validity range.
    run : str, optional
        Prefix of the RUN collections; each validity epoch goes to
        ``<run>/<YYYYMMDD of its beginning>`` (default prefix: ``collection``, giving
        e.g. ``HSC/calib/20160101``).
    collection : str
        The CALIBRATION collection to certify into.
    instrument : str
        Instrument of the data IDs.
    transfer : str
        Datastore transfer mode.

    Returns
    -------
    IngestResult
        Entries with overlapping validity (within ``entries`` or with what is already
        certified) are in ``failed`` with a `CalibrationConflictError` message naming the
        files; nothing of their group is half-written.
    """
    prefix = run or collection
    result = IngestResult("calibrations", collection=collection)
    with timed(result):
        if not entries:
            return result
        reg = butler.registry
        reg.register_collection(collection, CollectionType.CALIBRATION)
        for name in sorted({e.dataset_type for e in entries}):
            reg.register_dataset_type(calibration_dataset_type(reg.universe, name))
        good = _check_overlaps(entries, result.failed)
        groups: dict[tuple[str, str, Timespan], list[CalibrationEntry]] = {}
        for e in good:
            groups.setdefault((e.dataset_type, calibration_run(prefix, e), validity(e)), []).append(
                e
            )
        for (_, run_name, _), group in groups.items():
            try:
                new = _ingest_group(butler, group, run_name, collection, instrument, transfer)
                result.ingested += new
                result.skipped += len(group) - new
                result.rows += 2 * new
                continue
            except Rc2Error:
                pass
            for e in group:
                try:
                    new = _ingest_group(butler, [e], run_name, collection, instrument, transfer)
                except Rc2Error as exc:
                    result.failed.append((str(e.file), f"{e.file}: {exc}"))
                    continue
                result.ingested += new
                result.skipped += 1 - new
                result.rows += 2 * new
    return result
