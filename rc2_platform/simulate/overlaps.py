"""Count how a planned survey overlaps a tract (used to tune the ``rc2`` preset).

The counts mirror what the QuantumGraph of the RC2 pipeline sees for one tract:
detector-exposures whose region overlaps the tract (isr/characterizeImage/calibrate
quanta) and visit-patch pairs where some detector of the visit overlaps the patch
(makeWarp quanta).  Overlap is sphgeom's conservative "may overlap" (not DISJOINT), like
the registry's spatial joins.
"""

from __future__ import annotations

from dataclasses import dataclass

import lsst.sphgeom as sphgeom
import numpy as np

from rc2_platform.simulate import _geometry as geo
from rc2_platform.simulate.plan import PlannedVisit, make_visit_plan
from rc2_platform.simulate.presets import SimulationPreset

__all__ = ["TractOverlaps", "count_tract_overlaps", "preset_tract_overlaps"]


@dataclass(frozen=True)
class TractOverlaps:
    """Overlap counts of a survey with one tract."""

    tract: int
    visits: int
    detector_exposures: int
    visit_patches: int
    patches: int
    patch_bands: int


def count_tract_overlaps(
    visits: list[PlannedVisit], detectors: list[int], skymap_config: str, tract_id: int
) -> TractOverlaps:
    """Count detector-exposure, visit-patch and patch-band overlaps with a tract."""
    tract = geo.skymap(skymap_config).tract(tract_id)
    patches = tract.patches
    if not visits:
        return TractOverlaps(tract_id, 0, 0, 0, 0, 0)
    fp = geo.detector_regions(
        np.array([v.ra for v in visits]),
        np.array([v.dec for v in visits]),
        np.array([v.rot for v in visits]),
        detectors,
    )
    n_det_exp, visit_patch, touched_visits = 0, 0, 0
    patch_bands: set[tuple[int, str]] = set()
    tract_region = tract.inner_region
    for i, visit in enumerate(visits):
        polys = [fp.polygon(i, j) for j in range(len(detectors))]
        hits = [p for p in polys if not (tract_region.relate(p) & sphgeom.DISJOINT)]
        if not hits:
            continue
        touched_visits += 1
        n_det_exp += len(hits)
        for patch in patches:
            region = patch.inner_region
            if any(not (region.relate(p) & sphgeom.DISJOINT) for p in hits):
                visit_patch += 1
                patch_bands.add((patch.sequential_id, visit.band))
    return TractOverlaps(
        tract_id,
        touched_visits,
        n_det_exp,
        visit_patch,
        len({p for p, _ in patch_bands}),
        len(patch_bands),
    )


def preset_tract_overlaps(
    preset: SimulationPreset, seed: int, tract_id: int, detectors: list[int] | None = None
) -> TractOverlaps:
    """:func:`count_tract_overlaps` for every visit of a preset (aimed at tract centres)."""
    sky = geo.skymap(preset.skymap)
    aims = {t: (sky.tract(t).ra, sky.tract(t).dec) for t in preset.tract_ids()}
    visits = make_visit_plan(preset, seed, aims)
    if detectors is None:
        detectors = (
            geo.science_detectors() if preset.detectors == "science" else list(preset.detectors)
        )
    return count_tract_overlaps(visits, detectors, preset.skymap, tract_id)
