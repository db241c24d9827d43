"""QuantumGraph builder behaviour on a hand-placed mini repository (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from rc2_platform.errors import ConflictingDefinitionError, GraphError
from rc2_platform.graph import QuantumGraph, QuantumGraphReader, load_graph, save_graph
from rc2_platform.graph.builder import QuantumGraphBuilder
from rc2_platform.registry import DatasetType
from rc2_platform_tests.graph._mini_repo import (
    INPUTS,
    OVERRIDE_RUN,
    VDR,
    VISITS,
    MiniRepo,
    box,
    build_mini_repo,
    expected_overlaps,
    htm7_of,
)

WHERE = "skymap = 'rings' AND tract = 0"
PRUNED = {(200, 1)}  # no HSC-R flat for detector 1


@pytest.fixture
def repo(db_url_sqlite_pg: str) -> Iterator[MiniRepo]:
    r = build_mini_repo(db_url_sqlite_pg)
    yield r
    r.registry.close()


@pytest.fixture
def sqlite_repo(tmp_path: Path) -> Iterator[MiniRepo]:
    r = build_mini_repo(f"sqlite:///{tmp_path / 'reg.sqlite3'}")
    yield r
    r.registry.close()


def build(repo: MiniRepo, inputs: list[str] | None = None, **kwargs: object) -> QuantumGraph:
    return QuantumGraphBuilder(
        repo.registry,
        repo.pipeline,
        inputs or INPUTS,
        "out",
        WHERE,
        **kwargs,  # type: ignore[arg-type]
    ).build()


def expected_graph() -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """Per-task counts and task edges computed from the geometry alone."""
    ovl = expected_overlaps()
    frames = {(v, d) for v, d, _ in ovl} - PRUNED
    warps: dict[tuple[int, int], int] = defaultdict(int)  # (visit, patch) -> detectors
    for v, d, p in ovl:
        if (v, d) in frames:
            warps[(v, p)] += 1
    coadds: dict[tuple[str, int], int] = defaultdict(int)  # (band, patch) -> visits
    for v, p in warps:
        coadds[(VISITS[v][1], p)] += 1
    patches: dict[int, int] = defaultdict(int)  # patch -> bands
    for _, p in coadds:
        patches[p] += 1
    n, nc = len(frames), len(coadds)
    counts = {
        "isr": n, "characterizeImage": n, "calibrate": n, "makeWarp": len(warps),
        "assembleCoadd": nc, "detection": nc, "mergeDetections": len(patches), "deblend": nc,
        "measure": nc, "mergeMeasurements": len(patches), "forcedPhotCoadd": nc,
    }  # fmt: skip
    band_edges = sum(patches.values())
    edges = {
        ("isr", "characterizeImage"): n,
        ("characterizeImage", "calibrate"): n,
        ("calibrate", "makeWarp"): sum(warps.values()),
        ("makeWarp", "assembleCoadd"): sum(coadds.values()),
        ("assembleCoadd", "detection"): nc,
        ("detection", "mergeDetections"): band_edges,
        ("mergeDetections", "deblend"): nc,
        ("assembleCoadd", "deblend"): nc,
        ("deblend", "measure"): nc,
        ("assembleCoadd", "measure"): nc,
        ("measure", "mergeMeasurements"): band_edges,
        ("mergeMeasurements", "forcedPhotCoadd"): nc,
        ("assembleCoadd", "forcedPhotCoadd"): nc,
    }
    return counts, edges


def test_counts_and_edges_match_the_geometry(repo: MiniRepo) -> None:
    graph = build(repo)
    counts, edges = expected_graph()
    assert graph.counts_by_task() == counts
    assert graph.task_edges() == edges
    frames = {
        (q.data_id["visit"], q.data_id["detector"]) for q in graph.quanta_for_task("calibrate")
    }
    assert frames == {(v, d) for v, d, _ in expected_overlaps()} - PRUNED
    assert (101, 2) not in frames  # overlaps no patch of the tract
    warp = next(
        q
        for q in graph.quanta_for_task("makeWarp")
        if (q.data_id["visit"], q.data_id["patch"]) == (100, 0)
    )
    assert sorted(r.data_id["detector"] for r in warp.inputs["calexp_list"]) == [0, 1]
    assert graph.metadata["counts"] == counts
    assert graph.metadata["where"] == WHERE and graph.metadata["created"].endswith("+00:00")


def test_missing_flat_prunes_its_quanta_and_reports_why(repo: MiniRepo) -> None:
    graph = build(repo)
    pruned = graph.metadata["pruned"]
    assert {k: v["count"] for k, v in pruned.items()} == {
        "isr": 1, "characterizeImage": 1, "calibrate": 1,
    }  # fmt: skip
    (reason,) = pruned["isr"]["reasons"]
    assert reason.startswith("no flat for physical_filter HSC-R, detector 1")
    assert "2019-03-05T11:00:00" in pruned["isr"]["examples"][reason]
    assert "isr quanta producing it were pruned" in next(
        iter(pruned["characterizeImage"]["reasons"])
    )
    # visit 200 detector 1 only overlaps patch 0, which detector 0 also covers: the warp stays
    warp = next(
        q
        for q in graph.quanta_for_task("makeWarp")
        if (q.data_id["visit"], q.data_id["patch"]) == (200, 0)
    )
    assert [r.data_id["detector"] for r in warp.inputs["calexp_list"]] == [0]


def test_calibrations_are_chosen_by_validity_time(sqlite_repo: MiniRepo) -> None:
    graph = build(sqlite_repo)
    isr = {(q.data_id["exposure"], q.data_id["detector"]): q for q in graph.quanta_for_task("isr")}
    # detector 2 has a dark valid only in 2018: it must never be picked
    assert all(q.inputs["dark"][0].id != sqlite_repo.darks["old"].id for q in isr.values())
    assert isr[(100, 2)].inputs["dark"][0].run == "HSC/calib/run"
    assert isr[(100, 0)].inputs["flat"][0].id == sqlite_repo.flats["early"].id
    assert isr[(101, 0)].inputs["flat"][0].id == sqlite_repo.flats["late"].id


def test_first_input_collection_wins(sqlite_repo: MiniRepo) -> None:
    def raw_of(graph: QuantumGraph) -> str:
        (q,) = [
            q
            for q in graph.quanta_for_task("isr")
            if (q.data_id["exposure"], q.data_id["detector"]) == (100, 0)
        ]
        return str(q.inputs["ccd_exposure"][0].id)

    assert raw_of(build(sqlite_repo, [OVERRIDE_RUN, *INPUTS])) == str(sqlite_repo.override_raw.id)  # type: ignore[union-attr]
    assert raw_of(build(sqlite_repo, [*INPUTS, OVERRIDE_RUN])) == str(sqlite_repo.raws[(100, 0)].id)


def test_refcat_shards_are_those_overlapping_the_detector(sqlite_repo: MiniRepo) -> None:
    graph = build(sqlite_repo)
    for q in graph.quanta_for_task("calibrate"):
        key = (int(q.data_id["visit"]), int(q.data_id["detector"]))
        expected = htm7_of(box(*VDR[key])) & sqlite_repo.shards
        assert {r.data_id["htm7"] for r in q.inputs["ref_cat"]} == expected
    masks = {
        q.inputs["bright_object_mask"][0].data_id["patch"] for q in graph.quanta_for_task("measure")
    }
    assert masks == {0, 1, 2, 3}


def _execute(repo: MiniRepo, graph: QuantumGraph, labels: set[str]) -> None:
    """Pretend to run the quanta of ``labels``: register their outputs in the output run."""
    reg = repo.registry
    reg.register_run(graph.output_run)
    refs = [r for q in graph.quanta if q.task_label in labels for r in q.all_outputs()]
    for dt in {r.dataset_type for r in refs}:
        reg.register_dataset_type(dt)
    reg.import_datasets(refs)


def test_skip_existing_feeds_existing_outputs_downstream(sqlite_repo: MiniRepo) -> None:
    first = build(sqlite_repo)
    _execute(sqlite_repo, first, {"isr", "characterizeImage"})
    with pytest.raises(GraphError, match="already holds outputs.*--skip-existing-in out"):
        build(sqlite_repo)
    graph = build(sqlite_repo, skip_existing_in=["out"], extend_run=True)
    counts = graph.counts_by_task()
    assert counts["isr"] == 0 and counts["characterizeImage"] == 0
    assert graph.metadata["skipped"] == {"isr": 7, "characterizeImage": 7}
    produced = {r.id for q in first.quanta_for_task("characterizeImage") for r in q.all_outputs()}
    calib_inputs = {r.id for q in graph.quanta_for_task("calibrate") for r in q.inputs["exposure"]}
    assert calib_inputs and calib_inputs <= produced
    clobbered = build(sqlite_repo, clobber=True)
    assert clobbered.counts_by_task() == first.counts_by_task()
    assert clobbered.metadata["clobbered"] == {"isr": 7, "characterizeImage": 7}


def test_extend_run_needs_an_existing_run(sqlite_repo: MiniRepo) -> None:
    with pytest.raises(
        GraphError, match="--extend-run was given but output run 'out' does not exist"
    ):
        build(sqlite_repo, extend_run=True)


def test_conflicting_dataset_type_definition_names_both(sqlite_repo: MiniRepo) -> None:
    sqlite_repo.registry.register_dataset_type(
        DatasetType("calexp", ("instrument", "visit"), "Exposure")
    )
    with pytest.raises(
        ConflictingDefinitionError,
        match=r"calexp\(instrument, visit\).*calexp\(instrument, detector, visit\)",
    ):
        build(sqlite_repo)


def test_graph_round_trips_through_the_file_format(sqlite_repo: MiniRepo, tmp_path: Path) -> None:
    graph = build(sqlite_repo)
    path = tmp_path / "g.qgraph"
    save_graph(graph, path)
    loaded = load_graph(path)
    assert loaded.counts_by_task() == graph.counts_by_task()
    assert loaded.task_edges() == graph.task_edges()
    for a, b in zip(graph.quanta, loaded.quanta, strict=True):
        assert (a.task_label, a.data_id) == (b.task_label, b.data_id)
        assert {k: [r.id for r in v] for k, v in a.inputs.items()} == {
            k: [r.id for r in v] for k, v in b.inputs.items()
        }
        assert {k: [r.id for r in v] for k, v in a.outputs.items()} == {
            k: [r.id for r in v] for k, v in b.outputs.items()
        }
    assert loaded.metadata["pruned"] == graph.metadata["pruned"]
    with QuantumGraphReader(path) as reader:
        (q,) = reader.read_quanta([5])
    assert q.data_id == graph.quanta[5].data_id


def test_few_sql_statements_and_nothing_written(sqlite_repo: MiniRepo) -> None:
    statements: list[str] = []
    engine = sqlite_repo.registry.engine

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    build(sqlite_repo)
    sa.event.remove(engine, "before_cursor_execute", record)
    writes = [
        s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
    ]
    assert writes == []
    assert len(statements) < 60
