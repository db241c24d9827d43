"""The metadata-scale preset driver (``rc2``): header-only raws and calibrations.

Each raw is a FITS file with one data-less primary HDU (``NAXIS = 0``) carrying the full
HSC header of :func:`rc2_platform.instrument.make_raw_header` (unbinned geometry,
``BIN-FCT1/2 = 1``).  Formatting 45,000 astropy headers would take minutes, so one header
per visit is formatted and only the detector-dependent cards are re-rendered per file
(:class:`rc2_platform.simulate.fastfits.HeaderTemplate`); a check at start-up confirms
that no other card depends on the detector.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from astropy.table import Table, vstack

from rc2_platform.geometry import htm7_ids
from rc2_platform.simulate import _geometry as geo
from rc2_platform.simulate._geometry import DETECTOR_KEYS, detector_updates
from rc2_platform.simulate.calibs import write_calibrations
from rc2_platform.simulate.catalog import make_truth_catalog, write_truth
from rc2_platform.simulate.fastfits import HeaderTemplate
from rc2_platform.simulate.pixels import raw_relpath, visits_table
from rc2_platform.simulate.plan import PlannedVisit, make_visit_plan
from rc2_platform.simulate.presets import SimulationPreset
from rc2_platform.simulate.refcat import reference_table, write_refcat_shards
from rc2_platform.simulate.survey import SimulationResult, finish_survey, write_masks

__all__ = ["DETECTOR_KEYS", "detector_updates", "simulate_headers", "write_header_raws"]


def write_header_raws(
    root: Path, visits: list[PlannedVisit], detectors: list[int], fast: bool = True
) -> int:
    """Write header-only raws of ``visits`` x ``detectors``; return the number written."""
    count = 0
    for visit in visits:
        directory = root / raw_relpath(visit, detectors[0]).rsplit("/", 1)[0]
        directory.mkdir(parents=True, exist_ok=True)
        template = HeaderTemplate(geo.raw_header(visit, detectors[0], 1)) if fast else None
        for det in detectors:
            path = root / raw_relpath(visit, det)
            if template is not None:
                template.write(path, detector_updates(visit, det))
            else:
                HeaderTemplate(geo.raw_header(visit, det, 1)).write(path, {})
            count += 1
    return count


def _write_chunk(args: tuple[Path, list[PlannedVisit], list[int], bool]) -> int:
    return write_header_raws(*args)


def _write_raws_parallel(
    root: Path, visits: list[PlannedVisit], detectors: list[int], workers: int
) -> int:
    fast = geo.only_detector_keys_differ(visits[0], detectors, 1) if visits else True
    if workers <= 1 or len(visits) < 4:
        return write_header_raws(root, visits, detectors, fast)
    chunks = [(root, visits[i::workers], detectors, fast) for i in range(workers)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(_write_chunk, chunks))


def _refcat_and_masks(
    preset: SimulationPreset, root: Path, seed: int, tract_ids: list[int]
) -> tuple[Table, dict[int, Path], list]:
    sky = geo.skymap(preset.skymap)
    catalogs, masks = [], []
    for tract_id in tract_ids:
        tract = sky.tract(tract_id)
        n_shards = len(htm7_ids(tract.inner_region))
        ra_range, dec_range = geo.radec_box(tract, None, 0.02)
        cat = make_truth_catalog(
            seed,
            max(preset.refcat_stars_per_shard * n_shards, 1),
            0,
            ra_range,
            dec_range,
            (14.0, 22.0),
            stream=f"truth-{tract_id}",
        )
        masks += write_masks(root, tract, tract.patches, cat, 15.0, preset.refcat_name)
        catalogs.append(cat)
    truth = vstack(catalogs, metadata_conflicts="silent")
    truth["id"] = np.arange(1, len(truth) + 1, dtype=np.int64)
    ref = reference_table(truth, preset.bands, seed)
    shards = write_refcat_shards(ref, root / "refcat" / preset.refcat_name, preset.refcat_name)
    return truth, shards, masks


def simulate_headers(
    preset: SimulationPreset,
    root: Path,
    seed: int,
    tracts: list[int] | None,
    max_detectors: int | None,
    workers: int,
) -> SimulationResult:
    """Write a header-only survey (see :func:`rc2_platform.simulate.simulate`)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    sky = geo.skymap(preset.skymap)
    wanted = preset.tract_ids() if tracts is None else tracts
    aims = {t: (sky.tract(t).ra, sky.tract(t).dec) for t in preset.tract_ids() if t in wanted}
    visits = make_visit_plan(preset, seed, aims, wanted)
    detectors = geo.science_detectors() if preset.detectors == "science" else list(preset.detectors)
    if max_detectors is not None:
        detectors = detectors[:max_detectors]
    timings["plan"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    n_raws = _write_raws_parallel(root, visits, detectors, workers)
    timings["raws"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    filters = sorted({preset.filters[b] for b in preset.bands})
    calibs = write_calibrations(
        root, preset.calib_epochs.model_dump(), geo.detector_names(detectors), filters, None
    )
    timings["calibrations"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    truth, shards, masks = _refcat_and_masks(preset, root, seed, sorted(aims))
    write_truth(
        root / "truth.fits",
        truth,
        {},
        {"VISITS": visits_table(visits, list(preset.calib_epochs.bias))},
    )
    timings["refcat_masks_truth"] = time.perf_counter() - t0
    return finish_survey(
        preset, root, seed, visits, detectors, n_raws, calibs, shards, masks, len(truth), timings
    )
