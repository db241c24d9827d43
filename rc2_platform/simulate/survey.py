"""``simulate(preset, out_dir, seed)``: write a whole synthetic survey and its bootstrap.yaml.

Output layout under ``out_dir``::

    raw/<physical_filter>/<visit>/HSC-<visit>-<det>.fits   raws (pixels or header-only)
    calib/{bias,dark}/<begin>/..., calib/flat/<filter>/<begin>/...   master calibrations
    refcat/<name>/<htm7>.fits                              reference-catalog shards
    masks/<tract>/<patch>.reg                              bright-object masks
    truth.fits                                             truth catalog (+ visits, zero points)
    bootstrap.yaml                                         everything above, for ``rc2 bootstrap``
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.table import Table

from rc2_platform.errors import ConfigError
from rc2_platform.ingest.bootstrap_config import (
    BootstrapConfig,
    MaskEntry,
    RawSpec,
    RefcatShard,
    RefcatSpec,
    SkyMapSpec,
    write_bootstrap_config,
)
from rc2_platform.simulate.faults import FaultPlan
from rc2_platform.simulate.masks import MaskCircle, mask_radius_arcsec, write_mask_file
from rc2_platform.simulate.plan import PlannedVisit
from rc2_platform.simulate.presets import SimulationPreset, load_preset
from rc2_platform.skymap import PatchInfo, TractInfo

__all__ = ["SimulationResult", "finish_survey", "simulate", "write_masks"]


@dataclass
class SimulationResult:
    """What :func:`simulate` wrote (paths absolute) and how long each step took."""

    root: Path
    bootstrap: Path
    preset: str
    seed: int
    visits: list[PlannedVisit]
    detectors: list[int]
    raws: int
    calibrations: int
    refcat_shards: int
    masks: int
    truth_rows: int
    timings: dict[str, float] = field(default_factory=dict)
    faults: FaultPlan | None = None

    def summary(self) -> dict[str, object]:
        """Counts and timings as a flat dict (for the CLI and benchmarks)."""
        return {
            "preset": self.preset,
            "seed": self.seed,
            "visits": len(self.visits),
            "detectors": len(self.detectors),
            "raws": self.raws,
            "calibrations": self.calibrations,
            "refcat_shards": self.refcat_shards,
            "masks": self.masks,
            "truth_rows": self.truth_rows,
            **({"faults": str(self.root / "faults.yaml")} if self.faults else {}),
            **{f"seconds_{k}": round(v, 3) for k, v in self.timings.items()},
        }


def _scaled(preset: SimulationPreset, scale: float | None) -> SimulationPreset:
    if scale is None or scale == 1.0:
        return preset
    if not 0.0 < scale <= 1.0:
        raise ConfigError(f"scale {scale} must be in (0, 1]")
    tracts = [
        plan.model_copy(
            update={
                "visits_per_band": {
                    b: max(1, int(round(n * scale))) if n else 0
                    for b, n in plan.visits_per_band.items()
                }
            }
        )
        for plan in preset.tracts
    ]
    return preset.model_copy(update={"tracts": tracts})


def _mask_circles_for_patch(
    tract: TractInfo, patch: PatchInfo, bright: Table, pixscale: float
) -> list[MaskCircle]:
    if len(bright) == 0:
        return []
    x, y = tract.wcs.all_world2pix(np.asarray(bright["ra"]), np.asarray(bright["dec"]), 0)
    radius = mask_radius_arcsec(np.asarray(bright["i_mag"]))
    r_px = radius / pixscale
    b = patch.outer_bbox
    dx = np.maximum(np.maximum(b.x_min - 0.5 - x, x - (b.x_max - 0.5)), 0.0)
    dy = np.maximum(np.maximum(b.y_min - 0.5 - y, y - (b.y_max - 0.5)), 0.0)
    hit = np.hypot(dx, dy) < r_px
    return [
        MaskCircle(
            float(r["ra"]) % 360.0, float(r["dec"]), float(rad), int(r["id"]), float(r["i_mag"])
        )
        for r, rad in zip(bright[hit], radius[hit], strict=True)
    ]


def write_masks(
    root: Path,
    tract: TractInfo,
    patches: list[PatchInfo],
    stars: Table,
    bright_mag: float,
    catalog: str,
) -> list[MaskEntry]:
    """Write the bright-object mask file of every patch in ``patches``."""
    bright = stars[np.asarray(stars["i_mag"]) < bright_mag]
    pixscale = tract.config.pixel_scale_arcsec
    entries = []
    for patch in patches:
        circles = _mask_circles_for_patch(tract, patch, bright, pixscale)
        path = root / "masks" / str(tract.id) / f"{patch.sequential_id}.reg"
        write_mask_file(path, circles, tract=tract.id, patch=patch.sequential_id, catalog=catalog)
        entries.append(MaskEntry(tract=tract.id, patch=patch.sequential_id, file=path))
    return entries


def _prepare_root(out_dir: Path, overwrite: bool) -> Path:
    root = out_dir.resolve()
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"output directory {root} is not empty; choose another or pass overwrite "
                "(--overwrite) to replace it"
            )
        for sub in ("raw", "calib", "refcat", "masks"):
            shutil.rmtree(root / sub, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    return root


def simulate(
    preset: str | Path | SimulationPreset,
    out_dir: str | Path,
    *,
    seed: int = 1,
    tracts: list[int] | None = None,
    scale: float | None = None,
    max_detectors: int | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    inject_faults: bool = False,
) -> SimulationResult:
    """Write a synthetic survey and its ``bootstrap.yaml``.

    Parameters
    ----------
    preset
        Preset name (``tiny``, ``rc2``), preset YAML path, or a loaded preset.
    out_dir
        Output directory (created; must be empty unless ``overwrite``).
    seed
        Every number of the survey is determined by the preset and this seed.
    tracts
        Only the visits aimed at these tracts (default: all of the preset's).
    scale
        Multiply every visit count by this factor in (0, 1] (at least one visit per band).
    max_detectors
        Read out only the first N detectors of the preset (by id) — for fast tests.
    workers
        Processes writing raws (and, for pixel presets, calibrations).
    overwrite
        Replace the contents of a non-empty ``out_dir``.
    progress
        Called as ``progress(stage, done, total)`` while a pixel preset's calibrations
        (per detector) and raws (per visit) are written.
    inject_faults
        Write the seed's failures into the raws (pixel presets): the preset's ``faults``
        section, else :func:`~rc2_platform.simulate.faults.default_fault_plan`. A
        preset's ``faults`` section is applied with or without this flag. The faults
        written are listed in ``out_dir/faults.yaml``.

    Returns
    -------
    SimulationResult
        Counts, paths and timings.
    """
    loaded = preset if isinstance(preset, SimulationPreset) else load_preset(preset)
    loaded = _scaled(loaded, scale)
    if seed < 0:
        raise ConfigError(f"seed {seed} must be a non-negative integer")
    unknown = sorted(set(tracts or []) - set(loaded.tract_ids()))
    if unknown:
        raise ConfigError(
            f"tracts {unknown} are not in preset {loaded.name!r} (it has {loaded.tract_ids()})"
        )
    if inject_faults and loaded.kind != "pixels":
        raise ConfigError(
            f"preset {loaded.name!r} has header-only raws; faults are injected into pixels "
            "(use tiny, rc2-pixels or another pixel preset)"
        )
    root = _prepare_root(Path(out_dir), overwrite)
    if loaded.kind == "pixels":
        from rc2_platform.simulate.pixel_survey import simulate_pixels

        return simulate_pixels(
            loaded, root, seed, tracts, max_detectors, workers, progress, inject_faults
        )
    from rc2_platform.simulate.headers import simulate_headers

    return simulate_headers(loaded, root, seed, tracts, max_detectors, workers)


def finish_survey(
    preset: SimulationPreset,
    root: Path,
    seed: int,
    visits: list[PlannedVisit],
    detectors: list[int],
    raws: int,
    calibrations: list,
    refcat_paths: dict[int, Path],
    masks: list[MaskEntry],
    truth_rows: int,
    timings: dict[str, float],
) -> SimulationResult:
    """Write ``bootstrap.yaml`` and assemble the :class:`SimulationResult`."""
    t0 = time.perf_counter()
    config = BootstrapConfig(
        instrument=preset.instrument,
        skymap=SkyMapSpec(name=preset.skymap, config=preset.skymap),
        tracts=sorted({v.tract for v in visits}),
        bands=[b for b in preset.bands if any(v.band == b for v in visits)],
        raws=RawSpec(paths=[root / "raw"], transfer="symlink"),
        calibrations=calibrations,
        refcat=RefcatSpec(
            name=preset.refcat_name,
            shards=[RefcatShard(htm7=k, file=p) for k, p in sorted(refcat_paths.items())],
        ),
        masks=masks,
        truth=root / "truth.fits",
    )
    path = write_bootstrap_config(config, root / "bootstrap.yaml")
    timings["bootstrap_yaml"] = time.perf_counter() - t0
    return SimulationResult(
        root=root,
        bootstrap=path,
        preset=preset.name,
        seed=seed,
        visits=visits,
        detectors=detectors,
        raws=raws,
        calibrations=len(calibrations),
        refcat_shards=len(refcat_paths),
        masks=len(masks),
        truth_rows=truth_rows,
        timings=timings,
    )
