"""``ingest_calibrations``: master bias/dark/flat files into RUNs, certified with validity.

All or nothing per call (a manifest, or a bootstrap's calibrations): every entry is
checked first — validity ranges of one type and data ID must not overlap inside the
manifest, and every file must be a readable calibration (the datastore's formatter opens
it and finds a 2-D image) — and any problem refuses the whole manifest, naming every
offending file. Then all files are ingested and certified in one transaction; an overlap
with an existing certification rolls the whole manifest back, naming the entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from astropy.time import Time

from rc2_platform.butler import Butler, FileDataset
from rc2_platform.core import CollectionType, DatasetIdGenMode, DatasetRef, Timespan
from rc2_platform.core.crash_points import crash_point
from rc2_platform.errors import CalibrationConflictError, Rc2Error
from rc2_platform.ingest._common import IngestResult, calibration_dataset_type, timed
from rc2_platform.ingest.bootstrap_config import CalibrationEntry

__all__ = ["calibration_run", "check_readable", "ingest_calibrations", "validity"]

#: Appended to every failure: the manifest is refused as a whole.
REFUSED = "nothing of this manifest was ingested or certified"


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


def _check_overlaps(entries: Sequence[CalibrationEntry]) -> list[tuple[str, str]]:
    """``(file, reason)`` of every entry overlapping an earlier one of the same type and data ID."""
    kept: dict[tuple[str, int, str | None], list[tuple[Timespan, CalibrationEntry]]] = {}
    failed = []
    for entry in entries:
        ts = validity(entry)
        clash = next((e for t, e in kept.get(_key(entry), []) if t.overlaps(ts)), None)
        kept.setdefault(_key(entry), []).append((ts, entry))
        if clash is not None:
            failed.append(
                (
                    str(entry.file),
                    f"{_describe(entry)} in {entry.file}: validity {ts} overlaps that of "
                    f"{clash.file} ({validity(clash)}) in the same manifest; fix the validity "
                    f"ranges ({REFUSED})",
                )
            )
    return failed


def check_readable(butler: Butler, entry: CalibrationEntry) -> str | None:
    """Why ``entry``'s file cannot serve as a calibration, or ``None`` if it can.

    The datastore's formatter for its storage class reads the file (as the pipeline will)
    and its image must be 2-D and non-empty (unless the entry is ``header_only``: then a
    readable header without pixels is what it should be); a truncated file fails here.
    """
    dt = calibration_dataset_type(butler.registry.universe, entry.dataset_type)
    formatter = butler.datastore.formatter_for(dt.storage_class)
    path = Path(entry.file)
    if not path.is_file():
        return f"{path}: no such file"
    try:
        obj = formatter.read(path)
    except Exception as exc:  # the formatter's and numpy's errors: file unusable
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"{path} is not a readable {entry.dataset_type} FITS file ({msg}); re-copy it"
    shape = getattr(getattr(obj, "image", obj), "shape", ())
    if entry.header_only and (len(shape) == 0 or min(shape) == 0):
        return None
    if len(shape) != 2 or min(shape) == 0:
        return f"{path}: {entry.dataset_type} image has shape {tuple(shape)}, not a 2-D image"
    return None


def _ref(butler: Butler, entry: CalibrationEntry, run: str, instrument: str) -> DatasetRef:
    """The deterministic ref ``entry`` is ingested as in ``run``."""
    uni = butler.registry.universe
    dt = calibration_dataset_type(uni, entry.dataset_type)
    values: dict[str, object] = {"instrument": instrument, "detector": entry.detector}
    if entry.physical_filter:
        values["physical_filter"] = entry.physical_filter
    data_id = uni.data_id(values, dt.dimensions)
    return DatasetRef.make(dt, data_id, run, DatasetIdGenMode.DATAID_TYPE_RUN)


def _moved_in(butler: Butler, entry: CalibrationEntry, prefix: str, instrument: str) -> bool:
    """Whether ``entry``'s file is gone because a ``move`` ingested it already.

    A ``move`` killed after its commit deleted some sources and not others; re-running
    the same manifest must not refuse the entries whose file it already took in.
    """
    if Path(entry.file).exists():
        return False
    try:
        ref = _ref(butler, entry, calibration_run(prefix, entry), instrument)
    except Rc2Error:
        return False
    return bool(butler.registry.query_datastore_record_columns([str(ref.id)]))


def _ingest_group(
    butler: Butler,
    entries: Sequence[CalibrationEntry],
    run: str,
    collection: str,
    instrument: str,
    transfer: str,
) -> int:
    """Ingest and certify one validity group (inside the caller's transaction)."""
    reg = butler.registry
    ts = validity(entries[0])
    datasets = [FileDataset(Path(e.file), _ref(butler, e, run, instrument)) for e in entries]
    reg.register_run(run)
    new = butler.ingest(datasets, transfer=transfer)
    if not new:
        return 0
    try:
        reg.certify(collection, new, ts)
    except CalibrationConflictError:
        # Name every entry of the group that clashes (the transaction is rolled back).
        by_id = {d.ref.id: e for d, e in zip(datasets, entries, strict=True)}
        clashes = []
        for ref in new:
            try:
                reg.certify(collection, [ref], ts)
            except CalibrationConflictError as exc:
                clashes.append(f"{by_id[ref.id].file}: {exc}")
        raise CalibrationConflictError("; ".join(clashes) + f" ({REFUSED})") from None
    crash_point("calibrations.certified")
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

    All or nothing: if any entry is refused, nothing of ``entries`` is ingested or
    certified (entries already certified by an earlier call stay, and are skipped).

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
        ``failed`` names every refused file and why: validity overlapping another
        entry of the manifest, an unreadable or truncated file (checked by reading it
        before anything is written), or an overlap with an existing certification.
        When ``failed`` is not empty, ``ingested`` is 0.
    """
    prefix = run or collection
    result = IngestResult("calibrations", collection=collection)
    with timed(result):
        if not entries:
            return result
        result.failed = _check_overlaps(entries)
        for e in entries:
            if _moved_in(butler, e, prefix, instrument):
                continue  # ingested (and certified) by a move killed after its commit
            why = check_readable(butler, e)
            if why is not None:
                result.failed.append((str(e.file), f"{why} ({REFUSED})"))
        if result.failed:
            return result
        reg = butler.registry
        for name in sorted({e.dataset_type for e in entries}):
            reg.register_dataset_type(calibration_dataset_type(reg.universe, name))
        groups: dict[tuple[str, str, Timespan], list[CalibrationEntry]] = {}
        for e in entries:
            key = (e.dataset_type, calibration_run(prefix, e), validity(e))
            groups.setdefault(key, []).append(e)
        try:
            with butler.transaction():
                reg.register_collection(collection, CollectionType.CALIBRATION)
                new = 0
                for (_, run_name, _), group in groups.items():
                    new += _ingest_group(butler, group, run_name, collection, instrument, transfer)
        except Rc2Error as exc:
            why = str(exc) if REFUSED in str(exc) else f"{exc} ({REFUSED})"
            result.failed.append((_culprit(exc, entries), why))
            return result
        result.ingested = new
        result.skipped = len(entries) - new
        result.rows = 2 * new
    return result


def _culprit(exc: Rc2Error, entries: Sequence[CalibrationEntry]) -> str:
    """The first entry file named in ``exc``'s message (else the first entry's)."""
    text = str(exc)
    return next((str(e.file) for e in entries if str(e.file) in text), str(entries[0].file))
