"""Raw ingest: read primary headers in bulk, insert exposures and raw datasets in batches.

Dataset ids are deterministic (``DATAID_TYPE_RUN``), so re-ingesting a file is a no-op
reported as *skipped*. A file that cannot be read or translated is reported with the
reason and the rest of the batch is ingested.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rc2_platform.butler import Butler, FileDataset
from rc2_platform.core import DatasetIdGenMode, DatasetRef, Timespan
from rc2_platform.core.names import check_collection_name, show
from rc2_platform.errors import IngestError, Rc2Error
from rc2_platform.ingest._common import (
    IngestResult,
    drop_run_if_empty,
    raw_dataset_type,
    registry_record,
    timed,
)
from rc2_platform.ingest._fitsheader import read_primary_header
from rc2_platform.ingest._geometry import (
    detector_footprints,
    only_skymap,
    overlaps_any,
    tract_regions,
)
from rc2_platform.instrument import ObservationRecord, tai_nsec_from_utc, translate_header

__all__ = ["RawInfo", "expand_files", "index_raws", "ingest_raws"]

#: Raws per registry transaction.
BATCH = 5_000
#: Below this many files headers are read in this process (a pool costs more than it saves).
PARALLEL_THRESHOLD = 256

Progress = Callable[[int], None]


@dataclass(frozen=True)
class RawInfo:
    """One raw file after header translation: its record, or why it failed.

    Attributes
    ----------
    path : Path
        The file.
    obs : ObservationRecord or None
        The translated header (``None`` if the file failed).
    error : str or None
        Why the file cannot be ingested.
    """

    path: Path
    obs: ObservationRecord | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the header was read and translated."""
        return self.obs is not None


def expand_files(paths: Iterable[str | Path], pattern: str = "*.fits") -> list[Path]:
    """Files named by ``paths``; directories are searched recursively for ``pattern``."""
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(sorted(q for q in path.rglob(pattern) if q.is_file()))
        else:
            out.append(path)
    return out


def _check_size(path: Path, header: Mapping[str, Any], header_bytes: int) -> None:
    """IngestError if the file is shorter than its primary header announces."""
    naxis = int(header.get("NAXIS", 0))
    data = 0
    if naxis > 0:
        data = abs(int(header.get("BITPIX", 8))) // 8
        for i in range(1, naxis + 1):
            data *= int(header.get(f"NAXIS{i}", 0))
    size = path.stat().st_size
    if size < header_bytes + data:
        raise IngestError(
            f"{path} is truncated: {size} bytes, but its primary header announces "
            f"{header_bytes + data}; re-copy the file"
        )


def read_raw(path: str | Path) -> RawInfo:
    """Read and translate the primary header of one raw file (never raises)."""
    path = Path(path)
    try:
        header, header_bytes = read_primary_header(path)
    except FileNotFoundError:
        return RawInfo(path, error=f"{path}: no such file")
    except Exception as exc:  # OSError, HeaderFormatError, astropy's errors
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return RawInfo(path, error=f"{path} is not a readable FITS file ({msg})")
    try:
        _check_size(path, header, header_bytes)
        return RawInfo(path, obs=translate_header(header, filename=str(path)))
    except IngestError as exc:
        return RawInfo(path, error=str(exc))
    except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
        return RawInfo(path, error=f"{path}: unusable header ({show(str(exc))})")


def _read_chunk(paths: Sequence[Path]) -> list[RawInfo]:
    return [read_raw(p) for p in paths]


def index_raws(
    files: Iterable[str | Path], processes: int = 2, progress: Progress | None = None
) -> list[RawInfo]:
    """Read the primary headers of many raws (in a process pool when there are many).

    Parameters
    ----------
    files : iterable of path
        Raw files (use :func:`expand_files` for directories).
    processes : int
        Worker processes; 1 reads in this process.
    progress : callable, optional
        Called with the number of files just read.

    Returns
    -------
    list[RawInfo]
        One per file, in input order; failures carry the reason.
    """
    paths = [Path(f) for f in files]
    if processes <= 1 or len(paths) < PARALLEL_THRESHOLD:
        out = []
        for p in paths:
            out.append(read_raw(p))
            if progress:
                progress(1)
        return out
    size = max(64, min(2000, len(paths) // (processes * 8) + 1))
    chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
    results: list[RawInfo] = []
    with ProcessPoolExecutor(max_workers=processes) as pool:
        for chunk_result in pool.map(_read_chunk, chunks):
            results.extend(chunk_result)
            if progress:
                progress(len(chunk_result))
    return results


def _day_obs_record(instrument: str, day_obs: int) -> dict[str, Any]:
    date = _dt.date(day_obs // 10000, day_obs // 100 % 100, day_obs % 100)
    begin = tai_nsec_from_utc(date, 0.0)
    end = tai_nsec_from_utc(date + _dt.timedelta(days=1), 0.0)
    return {"instrument": instrument, "day_obs": day_obs, "timespan": Timespan(begin, end)}


def _select(
    butler: Butler,
    infos: list[RawInfo],
    tracts: Sequence[int] | None,
    bands: Sequence[str] | None,
    skymap: str | None,
) -> list[RawInfo]:
    """Raws of ``bands`` whose detector region overlaps one of ``tracts``."""
    if bands is not None:
        wanted = set(bands)
        infos = [i for i in infos if i.obs is not None and i.obs.band in wanted]
    if tracts is None or not infos:
        return infos
    regions = list(tract_regions(butler, only_skymap(butler, skymap), tracts).values())
    obs = [i.obs for i in infos if i.obs is not None]
    pointings = {o.exposure_id: (o.tracking_ra, o.tracking_dec, o.rotation_angle) for o in obs}
    polys = detector_footprints(pointings, [(o.exposure_id, o.detector_id) for o in obs])
    return [
        i
        for i in infos
        if i.obs is not None
        and overlaps_any(polys[(i.obs.exposure_id, i.obs.detector_id)], regions)
    ]


def _dedupe(infos: list[RawInfo], failed: list[tuple[str, str]]) -> list[RawInfo]:
    seen: dict[tuple[str, int, int], Path] = {}
    out = []
    for info in infos:
        assert info.obs is not None
        key = (info.obs.instrument, info.obs.exposure_id, info.obs.detector_id)
        if key in seen:
            failed.append(
                (
                    str(info.path),
                    f"{info.path} has the same data ID {info.obs.data_id} as {seen[key]}; "
                    "only the first was ingested",
                )
            )
            continue
        seen[key] = info.path
        out.append(info)
    return out


def _ingest_group(
    butler: Butler, infos: Sequence[RawInfo], run: str, transfer: str
) -> tuple[int, int]:
    """One transaction: day_obs + exposure records and the raw datasets. (new, rows)."""
    reg = butler.registry
    uni = reg.universe
    dt = raw_dataset_type(uni)
    obs = [i.obs for i in infos if i.obs is not None]
    days = {(o.instrument, o.day_obs) for o in obs}
    exposures = {o.exposure_id: o for o in obs}
    datasets = [
        FileDataset(
            i.path,
            DatasetRef.make(
                dt,
                uni.data_id(i.obs.data_id, dt.dimensions),
                run,
                DatasetIdGenMode.DATAID_TYPE_RUN,
            ),
        )  # fmt: skip
        for i in infos
        if i.obs is not None
    ]
    with butler.transaction():
        rows = reg.insert_dimension_records(
            "day_obs", [_day_obs_record(i, d) for i, d in sorted(days)], skip_existing=True
        )
        rows += reg.insert_dimension_records(
            "exposure",
            [registry_record(uni, "exposure", o.exposure_record()) for o in exposures.values()],
            skip_existing=True,
        )
        new = butler.ingest(datasets, transfer=transfer)
    return len(new), rows + len(new)


def _batches(infos: list[RawInfo]) -> list[list[RawInfo]]:
    """Groups of whole exposures of about ``BATCH`` raws."""
    by_exp: dict[int, list[RawInfo]] = {}
    for i in infos:
        assert i.obs is not None
        by_exp.setdefault(i.obs.exposure_id, []).append(i)
    out: list[list[RawInfo]] = [[]]
    for group in by_exp.values():
        if out[-1] and len(out[-1]) + len(group) > BATCH:
            out.append([])
        out[-1].extend(group)
    return [b for b in out if b]


def _ingest_batch(
    butler: Butler, batch: list[RawInfo], run: str, transfer: str, result: IngestResult
) -> None:
    try:
        new, rows = _ingest_group(butler, batch, run, transfer)
        result.ingested += new
        result.skipped += len(batch) - new
        result.rows += rows
        return
    except Rc2Error:
        pass
    # Isolate the failure: one transaction per file, so the rest still lands.
    for info in batch:
        try:
            new, rows = _ingest_group(butler, [info], run, transfer)
        except Rc2Error as exc:
            result.failed.append((str(info.path), str(exc)))
            continue
        result.ingested += new
        result.skipped += 1 - new
        result.rows += rows


def ingest_raws(
    butler: Butler,
    files: Iterable[str | Path],
    *,
    run: str = "HSC/raw/all",
    transfer: str = "symlink",
    processes: int = 2,
    tracts: Sequence[int] | None = None,
    bands: Sequence[str] | None = None,
    skymap: str | None = None,
    progress: Progress | None = None,
) -> IngestResult:
    """Ingest raw files (or directories of them) into RUN ``run``.

    Parameters
    ----------
    butler : Butler
        The repository (the instrument must be registered).
    files : iterable of path
        Raw FITS files and/or directories (searched recursively for ``*.fits``).
    run : str
        RUN collection of the raws.
    transfer : str
        Datastore transfer mode: ``direct``, ``copy``, ``hardlink``, ``symlink``, ``move``.
    processes : int
        Processes reading headers.
    tracts, bands : sequence, optional
        Only raws of these bands whose detector region overlaps these tracts (what a
        Dagster ``tract x band`` partition ingests). Tracts need a registered sky map.
    skymap : str, optional
        Sky map of ``tracts``; default: the only registered one.
    progress : callable, optional
        Called with the number of headers just read.

    Returns
    -------
    IngestResult
        ``failed`` lists every file that was not ingested with the reason.
    """
    check_collection_name(run, "RUN", where="--run")
    result = IngestResult("raws", collection=run)
    with timed(result):
        paths = expand_files(files)
        infos = index_raws(paths, processes, progress)
        result.failed.extend((str(i.path), i.error or "") for i in infos if not i.ok)
        good = _dedupe([i for i in infos if i.ok], result.failed)
        good = _select(butler, good, tracts, bands, skymap)
        if not good:
            return result
        butler.registry.register_dataset_type(raw_dataset_type(butler.registry.universe))
        created = butler.registry.register_run(run)
        for batch in _batches(good):
            _ingest_batch(butler, batch, run, transfer, result)
        drop_run_if_empty(butler, run, created)
        if result.rows >= 10_000:
            butler.registry.analyze(["exposure", "dataset", "file_datastore_records"])
    return result


def default_processes() -> int:
    """Header-reading processes to use by default: the CPUs available, at most 4."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2))
