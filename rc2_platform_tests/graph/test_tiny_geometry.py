"""The tiny survey's graph matches what the simulated geometry says, computed independently.

Expected quanta come from each raw's own header: its pointing and rotator angle give an
astropy WCS of the detector (``detector_wcs``), whose pixel corners make a sky polygon;
that polygon is tested against the sky map's patch regions with sphgeom. The registry's
regions and overlap tables (vectorized TAN code) are not used.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import lsst.sphgeom as sg
import numpy as np
from astropy.io import fits

from rc2_platform.butler import Butler
from rc2_platform.graph import QuantumGraphBuilder
from rc2_platform.ingest import bootstrap, load_bootstrap_config
from rc2_platform.instrument import detector_wcs, load_camera, translate_header
from rc2_platform.pipeline import Pipeline
from rc2_platform.simulate import SimulationResult
from rc2_platform.skymap import load_skymap


def _sky_polygon(header: fits.Header) -> tuple[int, int, str, sg.ConvexPolygon]:
    obs = translate_header(header)
    camera = load_camera()
    wcs = detector_wcs(
        obs.tracking_ra, obs.tracking_dec, obs.rotation_angle, obs.detector_id, obs.binning
    )
    nx, ny = camera.config.detector_nx // obs.binning, camera.config.detector_ny // obs.binning
    x = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5])
    y = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
    ra, dec = wcs.all_pix2world(x, y, 0)
    vertices = [
        sg.UnitVector3d(sg.LonLat.fromDegrees(float(a), float(d)))
        for a, d in zip(ra, dec, strict=True)
    ]
    return obs.visit_id, obs.detector_id, obs.band, sg.ConvexPolygon(vertices)


def test_tiny_counts_and_edges_follow_the_simulated_geometry(
    tiny_survey: SimulationResult, tmp_path: Path
) -> None:
    config = load_bootstrap_config(tiny_survey.bootstrap)
    tract_id = config.tracts[0]
    patches = sorted({m.patch for m in config.masks if m.tract == tract_id})
    tract = load_skymap(config.skymap.config).tract(tract_id)
    regions = {p: tract.patch(p).inner_region for p in patches}

    overlaps = set()  # (visit, detector, patch)
    band_of: dict[int, str] = {}
    for path in config.raws.iter_files():
        visit, detector, band, polygon = _sky_polygon(fits.getheader(path))
        band_of[visit] = band
        for patch, region in regions.items():
            if polygon.overlaps(region):
                overlaps.add((visit, detector, patch))

    frames = {(v, d) for v, d, _ in overlaps}
    warps = {(v, p) for v, _, p in overlaps}
    coadds = {(p, band_of[v]) for v, p in warps}
    expected = {
        "isr": len(frames),
        "characterizeImage": len(frames),
        "calibrate": len(frames),
        "makeWarp": len(warps),
        "assembleCoadd": len(coadds),
        "detection": len(coadds),
        "mergeDetections": len({p for p, _ in coadds}),
        "deblend": len(coadds),
        "measure": len(coadds),
        "mergeMeasurements": len({p for p, _ in coadds}),
        "forcedPhotCoadd": len(coadds),
    }
    calexps_per_warp: dict[tuple[int, int], int] = defaultdict(int)
    for v, _d, p in overlaps:
        calexps_per_warp[(v, p)] += 1

    repo = tmp_path / "repo"
    bootstrap(tiny_survey.bootstrap, repo, progress=False)
    with Butler(repo) as butler:
        graph = QuantumGraphBuilder(
            butler,
            Pipeline.from_yaml("DRP-RC2"),
            input_collections=[config.collections.defaults],
            output_run="u/test/geometry",
            where="skymap = :skymap AND tract = :tract AND patch IN (:patches)",
            bind={"skymap": config.skymap.name, "tract": tract_id, "patches": patches},
        ).build()

    assert graph.counts_by_task() == expected
    edges = graph.task_edges()
    assert edges[("isr", "characterizeImage")] == len(frames)
    assert edges[("calibrate", "makeWarp")] == len(overlaps)
    assert edges[("makeWarp", "assembleCoadd")] == len(warps)
    for q in graph.quanta_for_task("makeWarp"):
        key = (q.data_id["visit"], q.data_id["patch"])
        assert len(q.inputs["calexp_list"]) == (calexps_per_warp[key])
