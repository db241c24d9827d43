"""A --where on a dimension some tasks lack constrains the whole pipeline's data-ID query.

As in LSST's ``pipetask qgraph -d``, the expression constrains one join of every
dimension of the pipeline: ``visit = 101`` keeps the coadds of the visit's band and of
the patches its detectors overlap, ``band = 'g'`` keeps the isr quanta of g exposures
(with their calibrations), ``detector = 0`` keeps the coadds its frames feed. The
expected quanta come from the mini repository's hand-placed geometry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from rc2_platform.graph import QuantumGraph
from rc2_platform.graph.builder import QuantumGraphBuilder
from rc2_platform.pipeline import Pipeline
from rc2_platform_tests.graph._mini_repo import (
    AUX_RUN,
    INPUTS,
    PATCHES,
    SKYMAP,
    VISITS,
    MiniRepo,
    build_mini_repo,
    expected_overlaps,
)

TRACT = "skymap = 'rings' AND tract = 0"
PRUNED = {(200, 1)}  # no HSC-R flat for detector 1
Keep = Callable[[int, int, int], bool]
ORDER = ("exposure", "visit", "detector", "band", "patch")  # of the data ID tuples


@pytest.fixture
def repo(db_url: str) -> Iterator[MiniRepo]:
    r = build_mini_repo(db_url)
    yield r
    r.registry.close()


def build(repo: MiniRepo, where: str, pipeline: str = "DRP-RC2") -> QuantumGraph:
    return QuantumGraphBuilder(
        repo.registry, Pipeline.from_yaml(pipeline), INPUTS, "out", f"{TRACT} AND {where}"
    ).build()


def quanta(graph: QuantumGraph) -> dict[str, set[tuple[object, ...]]]:
    """Task label -> its quanta's data IDs as tuples in ``ORDER`` (no instrument/tract)."""
    out: dict[str, set[tuple[object, ...]]] = {}
    for q in graph.quanta:
        keys = [d for d in ORDER if d in q.data_id.dimensions]
        out.setdefault(q.task_label, set()).add(tuple(q.data_id[d] for d in keys))
    return out


def expected(keep: Keep) -> dict[str, set[tuple[object, ...]]]:
    """Quanta per task of the whole pipeline over the (visit, detector, patch) overlaps kept."""
    ovl = {(v, d, p) for v, d, p in expected_overlaps() if keep(v, d, p) and (v, d) not in PRUNED}
    frames = {(v, d) for v, d, _ in ovl}
    coadds = {(p, VISITS[v][1]) for v, _, p in ovl}
    patches = {(p,) for p, _ in coadds}
    out: dict[str, set[tuple[object, ...]]] = {
        "isr": frames, "characterizeImage": frames, "calibrate": frames,
        "makeWarp": {(v, p) for v, _, p in ovl},
        "mergeDetections": patches, "mergeMeasurements": patches,
    }  # fmt: skip
    for label in ("assembleCoadd", "detection", "deblend", "measure", "forcedPhotCoadd"):
        out[label] = {(b, p) for p, b in coadds}
    return out


def test_visit_keeps_the_coadds_of_its_band_and_patches(repo: MiniRepo) -> None:
    graph = quanta(build(repo, "visit = 101"))
    assert graph == expected(lambda v, d, p: v == 101)
    assert graph["assembleCoadd"] == {("g", 1), ("g", 2)}  # not r, not patches 0 and 3
    assert graph["mergeDetections"] == {(1,), (2,)}


def test_exposure_relates_through_the_visit_definition(repo: MiniRepo) -> None:
    assert quanta(build(repo, "exposure = 101")) == expected(lambda v, d, p: v == 101)


def test_detector_keeps_the_coadds_its_frames_feed(repo: MiniRepo) -> None:
    graph = quanta(build(repo, "detector = 0"))
    assert graph == expected(lambda v, d, p: d == 0)
    assert graph["assembleCoadd"] == {("g", 0), ("g", 2), ("r", 0), ("r", 1), ("r", 2), ("r", 3)}


def test_band_keeps_single_frame_quanta_of_that_band(repo: MiniRepo) -> None:
    assert quanta(build(repo, "band = 'r'")) == expected(lambda v, d, p: v == 200)


def test_band_and_visit_on_isr_alone_keep_the_calibrations(repo: MiniRepo) -> None:
    # isr has neither band nor visit: both are joined through the exposure's records,
    # and the bias, dark and flat are still looked up by the exposure's time.
    graph = build(repo, "band = 'g'", "DRP-RC2#isr")
    assert quanta(graph) == {"isr": {(v, d) for v in (100, 101) for d in (0, 1, 2)}}
    flat = {}
    for q in graph.quanta:
        assert [len(q.inputs[c]) for c in ("bias", "dark", "flat")] == [1, 1, 1]
        flat[(q.data_id["exposure"], q.data_id["detector"])] = q.inputs["flat"][0]
    assert flat[(100, 0)] == repo.flats["early"] and flat[(101, 0)] == repo.flats["late"]
    graph = build(repo, "visit = 100", "DRP-RC2#isr")
    assert quanta(graph) == {"isr": {(100, d) for d in (0, 1, 2)}}
    assert all(len(q.inputs["bias"]) == 1 for q in graph.quanta)


def _insert_coadds(repo: MiniRepo) -> None:
    dt = repo.pipeline.to_graph().dataset_types["deepCoadd"].dataset_type
    repo.registry.register_dataset_type(dt)
    rows = [{"skymap": SKYMAP, "tract": 0, "patch": p, "band": b} for p in PATCHES for b in "gr"]
    repo.registry.insert_datasets("deepCoadd", rows, AUX_RUN)


VISIT_101 = {("g", 1), ("g", 2)}
ALL_G = {("g", p) for p in PATCHES}


@pytest.mark.parametrize(
    ("where", "coadds"),
    [
        ("visit = 101", VISIT_101),
        ("visit.day_obs = 20190306", VISIT_101),
        # An exposure has no region (as in LSST): its band, every patch.
        ("exposure = 101", ALL_G),
    ],
)
def test_visit_on_a_coadd_only_subset_matches_query_data_ids(
    repo: MiniRepo, where: str, coadds: set[tuple[str, int]]
) -> None:
    # detection alone: its overall input deepCoadd gives band, the visit gives the
    # physical_filter; the physical_filter table relates them (every band before), and
    # the visit's detectors' overlaps give the patches (every patch of the tract before).
    _insert_coadds(repo)
    graph = build(repo, where, "DRP-RC2#detection")
    assert quanta(graph) == {"detection": coadds}
    reg = repo.registry
    ids = reg.query_data_ids(
        ["patch", "band"], f"{TRACT} AND {where}", datasets=["deepCoadd"], collections=INPUTS
    )
    assert {(c["band"], c["patch"]) for c in ids} == coadds
    refs = reg.query_datasets("deepCoadd", INPUTS, f"{TRACT} AND {where}")
    assert {(r.data_id["band"], r.data_id["patch"]) for r in refs} == coadds


def test_visit_and_patch_join_the_visits_detector_overlaps(repo: MiniRepo) -> None:
    # No detector in the query: the finest overlap (visit_detector_region x patch) is
    # projected, not visit x tract (which gave every patch of the tract).
    ids = repo.registry.query_data_ids(["visit", "patch"], f"{TRACT} AND visit IN (100, 101)")
    assert {(c["visit"], c["patch"]) for c in ids} == {
        (v, p) for v, _, p in expected_overlaps() if v in (100, 101)
    }
    assert {c["visit"] for c in repo.registry.query_data_ids(["visit", "tract"], TRACT)} == set(
        VISITS
    )
