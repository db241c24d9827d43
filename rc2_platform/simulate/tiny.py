"""The pixel preset driver (``tiny``): catalog, calibrations, raws, refcat, masks, truth."""

from __future__ import annotations

import time
from pathlib import Path

from astropy.table import Table

from rc2_platform.errors import ConfigError
from rc2_platform.simulate import _geometry as geo
from rc2_platform.simulate.calibs import write_calibrations
from rc2_platform.simulate.catalog import make_truth_catalog, write_truth
from rc2_platform.simulate.pixels import PixelCamera, visits_table, write_pixel_raws
from rc2_platform.simulate.plan import make_visit_plan
from rc2_platform.simulate.presets import SimulationPreset
from rc2_platform.simulate.refcat import reference_table, write_refcat_shards
from rc2_platform.simulate.survey import SimulationResult, finish_survey, write_masks

__all__ = ["simulate_pixels"]


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


def simulate_pixels(
    preset: SimulationPreset,
    root: Path,
    seed: int,
    tracts: list[int] | None,
    max_detectors: int | None,
) -> SimulationResult:
    """Write a pixel survey (see :func:`rc2_platform.simulate.simulate`)."""
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
    patches = geo.block_patches(tract, plan.patch_block) if plan.patch_block else tract.patches
    aim = geo.block_centre(tract, patches)
    visits = make_visit_plan(preset, seed, {plan.tract: aim}, [plan.tract])
    detectors = geo.science_detectors() if preset.detectors == "science" else list(preset.detectors)
    if max_detectors is not None:
        detectors = detectors[:max_detectors]
    ra_range, dec_range = geo.radec_box(tract, patches, preset.catalog.margin_deg)
    truth = make_truth_catalog(
        seed,
        preset.catalog.stars,
        preset.catalog.galaxies,
        ra_range,
        dec_range,
        preset.catalog.mag_range,
    )
    timings["plan_and_catalog"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    pcam = PixelCamera.build(preset, seed, detectors)
    filters = sorted({v.physical_filter for v in visits})
    calibs = write_calibrations(
        root,
        preset.calib_epochs.model_dump(),
        geo.detector_names(detectors),
        filters,
        pcam.master_image,
    )
    timings["calibrations"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    raws = write_pixel_raws(root, pcam, visits, detectors, truth, preset.camera.zero_points)
    timings["raws"] = time.perf_counter() - t0

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
            "DEFECTS": pcam.defects(),
        },
    )
    timings["refcat_masks_truth"] = time.perf_counter() - t0
    return finish_survey(
        preset, root, seed, visits, detectors, len(raws), calibs, shards, masks, len(truth), timings
    )
