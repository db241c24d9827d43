"""The pixel preset driver (``tiny``, ``rc2-pixels``): catalog, calibrations, raws, refcat,
masks, truth.

Calibrations are written per detector and raws per visit, by a pool of ``workers``
processes (``spawn``: nothing of the parent's state but the job is shared).  Every file
depends only on the preset, the seed and what it is (each draws from its own random
stream), so the result is the same for any number of workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TypeVar

import numpy as np
from astropy.table import Table

from rc2_platform.errors import ConfigError
from rc2_platform.ingest.bootstrap_config import CalibrationEntry
from rc2_platform.simulate import _geometry as geo
from rc2_platform.simulate.calibs import calibration_plan, write_calibrations
from rc2_platform.simulate.catalog import make_truth_catalog, write_truth
from rc2_platform.simulate.faults import FaultPlan, default_fault_plan, write_fault_manifest
from rc2_platform.simulate.pixels import PixelCamera, TruthSources, visits_table, write_visit_raws
from rc2_platform.simulate.plan import PlannedVisit, make_visit_plan
from rc2_platform.simulate.presets import SimulationPreset
from rc2_platform.simulate.refcat import reference_table, write_refcat_shards
from rc2_platform.simulate.survey import SimulationResult, finish_survey, write_masks
from rc2_platform.skymap import PatchInfo

__all__ = ["ProgressCallback", "simulate_pixels"]

#: Called as ``progress(stage, done, total)`` while calibrations and raws are written.
ProgressCallback = Callable[[str, int, int], None]

T = TypeVar("T")


def _zero_point_table(preset: SimulationPreset) -> Table:
    assert preset.camera is not None
    bands = preset.bands
    return Table(
        {
            "band": bands,
            "physical_filter": [preset.filters[b] for b in bands],
            "zero_point": [preset.camera.zero_points[b] for b in bands],
            "exptime": [preset.exptime] * len(bands),
        }
    )


@dataclass(frozen=True)
class _PixelJob:
    """Everything a writer process needs (pickled once per process)."""

    root: Path
    seed: int
    preset: SimulationPreset
    detectors: list[int]
    detector_names: dict[int, str]
    filters: list[str]
    visits: list[PlannedVisit]
    truth: TruthSources
    fast_headers: bool
    faults: FaultPlan | None = None


_job: _PixelJob | None = None
_camera: PixelCamera | None = None


def _init_worker(job: _PixelJob | None) -> None:
    global _job, _camera
    _job, _camera = job, None


def _current() -> tuple[_PixelJob, PixelCamera]:
    global _camera
    assert _job is not None, "writer process started without its job"
    if _camera is None:
        _camera = PixelCamera.build(_job.preset, _job.seed, _job.detectors)
    return _job, _camera


def _write_detector_calibrations(det: int) -> list[CalibrationEntry]:
    job, pcam = _current()
    epochs = job.preset.calib_epochs.model_dump()
    names = {det: job.detector_names[det]}
    return write_calibrations(job.root, epochs, names, job.filters, pcam.master_image)


def _write_visit(index: int) -> int:
    job, pcam = _current()
    assert job.preset.camera is not None
    visit = job.visits[index]
    zero_point = job.preset.camera.zero_points[visit.band]
    return write_visit_raws(
        job.root,
        pcam,
        visit,
        job.detectors,
        job.truth,
        zero_point,
        fast=job.fast_headers,
        faults=job.faults,
    )


def _map(
    pool: ProcessPoolExecutor | None,
    func: Callable[[int], T],
    items: list[int],
    stage: str,
    progress: ProgressCallback | None,
) -> Iterator[T]:
    """``func`` over ``items`` (in order) in the pool or in-process, reporting progress."""
    results = pool.map(func, items) if pool is not None else map(func, items)
    for done, result in enumerate(results, start=1):
        if progress is not None:
            progress(stage, done, len(items))
        yield result


def _write_calibrations_and_raws(
    job: _PixelJob, workers: int, progress: ProgressCallback | None, timings: dict[str, float]
) -> tuple[list[CalibrationEntry], int]:
    pool = None
    if workers > 1:
        pool = ProcessPoolExecutor(
            workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(job,)
        )
    else:
        _init_worker(job)
    try:
        t0 = time.perf_counter()
        per_detector = list(
            _map(pool, _write_detector_calibrations, job.detectors, "calibrations", progress)
        )
        timings["calibrations"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        raws = sum(_map(pool, _write_visit, list(range(len(job.visits))), "raws", progress))
        timings["raws"] = time.perf_counter() - t0
    finally:
        if pool is not None:
            pool.shutdown()
        _init_worker(None)
    # Manifest order of the serial writer: type, epoch, detector, filter.
    order = {
        rel: i
        for i, (*_, rel) in enumerate(
            calibration_plan(job.preset.calib_epochs.model_dump(), job.detectors, job.filters)
        )
    }
    entries = [e for entries in per_detector for e in entries]
    entries.sort(key=lambda e: order[e.file.relative_to(job.root).as_posix()])
    return entries, raws


def _patch_finder(
    patches: list[PatchInfo], binning: int
) -> Callable[[PlannedVisit, int], set[int]]:
    """``patches_of(visit, detector)``: patch ids whose inner box a raw lands on.

    Tested on a 5 x 9 grid of points over the detector (the patches are wider than a
    detector, so no patch slips between the points).
    """
    from lsst.sphgeom import LonLat, UnitVector3d

    camera = geo.load_camera()
    ny, nx = camera.detector_ny // binning, camera.detector_nx // binning
    yy, xx = np.meshgrid(np.linspace(0, ny - 1, 9), np.linspace(0, nx - 1, 5), indexing="ij")

    def patches_of(visit: PlannedVisit, detector: int) -> set[int]:
        wcs = geo.detector_wcs(visit.ra, visit.dec, visit.rot, detector, binning)
        ra, dec = wcs.all_pix2world(xx.ravel(), yy.ravel(), 0)
        points = [
            UnitVector3d(LonLat.fromDegrees(float(r), float(d)))
            for r, d in zip(ra, dec, strict=True)
        ]
        return {p.sequential_id for p in patches if any(p.inner_region.contains(v) for v in points)}

    return patches_of


def simulate_pixels(
    preset: SimulationPreset,
    root: Path,
    seed: int,
    tracts: list[int] | None,
    max_detectors: int | None,
    workers: int = 1,
    progress: ProgressCallback | None = None,
    inject_faults: bool = False,
) -> SimulationResult:
    """Write a pixel survey (see :func:`rc2_platform.simulate.simulate`).

    A plan with ``patch_block`` covers that block of patches (visits dithered around its
    centre, the truth catalog over it); without one, the whole tract (visits dithered
    around the tract centre exactly as the header-only presets do). Faults (the preset's
    ``faults``, or with ``inject_faults`` the default plan) go into the raws.
    """
    assert preset.camera is not None and preset.catalog is not None
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    sky = geo.skymap(preset.skymap)
    plans = [p for p in preset.tracts if tracts is None or p.tract in tracts]
    if len(plans) != 1:
        raise ConfigError(
            f"pixel preset {preset.name!r} simulates exactly one tract; got {len(plans)} "
            f"(preset tracts {preset.tract_ids()}, requested {tracts})"
        )
    plan = plans[0]
    tract = sky.tract(plan.tract)
    if plan.patch_block:
        patches = geo.block_patches(tract, plan.patch_block)
        aim = geo.block_centre(tract, patches)
    else:
        patches, aim = tract.patches, (tract.ra, tract.dec)
    visits = make_visit_plan(preset, seed, {plan.tract: aim}, [plan.tract])
    detectors = geo.science_detectors() if preset.detectors == "science" else list(preset.detectors)
    if max_detectors is not None:
        detectors = detectors[:max_detectors]
    ra_range, dec_range = geo.radec_box(
        tract, patches if plan.patch_block else None, preset.catalog.margin_deg
    )
    truth = make_truth_catalog(
        seed,
        preset.catalog.stars,
        preset.catalog.galaxies,
        ra_range,
        dec_range,
        preset.catalog.mag_range,
    )
    faults = preset.faults
    if faults is None and inject_faults:
        faults = default_fault_plan(
            visits, detectors, _patch_finder(patches, preset.camera.binning)
        )
    job = _PixelJob(
        root=root,
        seed=seed,
        preset=preset,
        detectors=detectors,
        detector_names=geo.detector_names(detectors),
        filters=sorted({v.physical_filter for v in visits}),
        visits=visits,
        truth=TruthSources.from_table(truth),
        fast_headers=bool(visits)
        and geo.only_detector_keys_differ(visits[0], detectors, preset.camera.binning),
        faults=faults,
    )
    timings["plan_and_catalog"] = time.perf_counter() - t0

    calibs, raws = _write_calibrations_and_raws(job, workers, progress, timings)

    t0 = time.perf_counter()
    ref = reference_table(truth, preset.bands, seed)
    shards = write_refcat_shards(ref, root / "refcat" / preset.refcat_name, preset.refcat_name)
    stars = truth[truth["is_star"]]
    masks = write_masks(
        root, tract, patches, stars, preset.catalog.bright_mask_mag, preset.refcat_name
    )
    write_truth(
        root / "truth.fits",
        truth,
        dict(preset.camera.zero_points),
        {
            "ZEROPOINTS": _zero_point_table(preset),
            "VISITS": visits_table(visits, list(preset.calib_epochs.bias)),
            "DEFECTS": PixelCamera.build(preset, seed, detectors).defects(),
        },
    )
    if faults is not None:
        write_fault_manifest(faults, root / "faults.yaml")
    timings["refcat_masks_truth"] = time.perf_counter() - t0
    result = finish_survey(
        preset, root, seed, visits, detectors, raws, calibs, shards, masks, len(truth), timings
    )
    result.faults = faults
    return result
