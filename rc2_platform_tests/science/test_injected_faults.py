"""The seed's four failures injected into a slice of the pixel preset, run for real.

A slice of ``rc2-pixels`` (one visit per band, twelve detectors, the patches they cover) is
simulated with ``inject_faults``: a detector with no stars, a detector whose sources are
two arcminutes off the header's pointing, and bad seeing on the y-band raws over one
patch (the coadd there is left without a usable PSF). A pipeline that
imports DRP-RC2 drops one source of one band at a patch left intact, so that patch's
mergeMeasurements sees mismatched ids. Each fault fails only its quanta with a readable
error, blocks exactly their descendants, and ``rc2 report`` groups the failures by error
next to the seed's per-task table.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rc2_platform.butler import Butler
from rc2_platform.cli import main
from rc2_platform.execution.report import build_report, error_pattern
from rc2_platform.execution.runner import RunOptions, run_graph
from rc2_platform.graph import QuantumGraph, QuantumGraphBuilder, save_graph
from rc2_platform.ingest import bootstrap, load_bootstrap_config
from rc2_platform.pipeline import Pipeline
from rc2_platform.simulate import simulate
from rc2_platform.simulate.faults import DetectorFault, FaultPlan, RawFault, SeeingFault

RUN = "u/test/faults"


def _graph(repo: Path, pipeline: str | Path, config_path: Path) -> QuantumGraph:
    config = load_bootstrap_config(config_path)
    with Butler(repo) as butler:
        return QuantumGraphBuilder(
            butler,
            Pipeline.from_yaml(pipeline),
            input_collections=[config.collections.defaults],
            output_run=RUN,
            where="skymap = :skymap AND tract = :tract",
            bind={"skymap": config.skymap.name, "tract": config.tracts[0]},
        ).build()


def _index(graph: QuantumGraph, task: str, **data_id: object) -> set[int]:
    return {
        q.index
        for q in graph.quanta
        if q.task_label == task and all(q.data_id[k] == v for k, v in data_id.items())
    }


def test_error_groups_leave_numbers_and_quoted_values_out() -> None:
    a = "Unable to match sources: 1 matches, need at least 5; check (pointing)"
    b = "Unable to match sources: 3 matches, need at least 5; check (pointing)"
    c = "no usable PSF for the coadd of tract 9615 patch 37 band 'y': warps (7.1 px)"
    d = "no usable PSF for the coadd of tract 9615 patch 38 band 'z': warps (7.3, 8.0 px)"
    assert error_pattern(a) == error_pattern(b)
    assert error_pattern(c) == error_pattern(d) != error_pattern(a)


def test_fault_plan_names_the_raws_it_changes() -> None:
    plan = FaultPlan(
        no_stars=[DetectorFault(visit=1000, detectors=[3])],
        bad_seeing=[SeeingFault(visit=1002, fwhm_factor=3.0)],
    )
    assert plan.for_raw(1000, 3) == RawFault(no_sources=True)
    assert plan.for_raw(1000, 4) is None
    assert plan.for_raw(1002, 77) == RawFault(fwhm_factor=3.0)
    assert plan.visits() == {1000, 1002}


@pytest.mark.slow
def test_injected_faults_fail_only_their_quanta_and_report_grouped(tmp_path: Path) -> None:
    survey = simulate(
        "rc2-pixels", tmp_path / "sim", scale=0.1, max_detectors=12, inject_faults=True
    )
    faults = yaml.safe_load((survey.root / "faults.yaml").read_text())["faults"]
    no_stars, pointing = faults["no_stars"][0], faults["pointing_offset"][0]
    blurred = {(f["visit"], d) for f in faults["bad_seeing"] for d in f["detectors"]}
    repo = tmp_path / "repo"
    bootstrap(survey.bootstrap, repo, progress=False)

    plain = _graph(repo, "DRP-RC2", survey.bootstrap)
    expected = {
        "characterizeImage": _index(
            plain, "characterizeImage", visit=no_stars["visit"], detector=no_stars["detectors"][0]
        ),
        "calibrate": _index(
            plain, "calibrate", visit=pointing["visit"], detector=pointing["detectors"][0]
        ),
    }
    assert all(len(v) == 1 for v in expected.values()), expected
    # Coadds that may lose every warp to the bad seeing: those fed by a blurred raw.
    band_of = {v.visit: v.band for v in survey.visits}
    psf_patches = {
        (q.data_id["patch"], band_of[q.data_id["visit"]])
        for q in plain.quanta
        if q.task_label == "makeWarp"
        and any((r.data_id["visit"], r.data_id["detector"]) in blurred
                for r in q.inputs["calexp_list"])
    }  # fmt: skip
    psf_candidates = {
        q.index
        for q in plain.quanta
        if q.task_label == "assembleCoadd"
        and (q.data_id["patch"], q.data_id["band"]) in psf_patches
    }
    assert psf_candidates
    hit = plain.all_downstream(set().union(*expected.values(), psf_candidates))
    # The fourth fault: one band of a patch that the data faults leave intact.
    intact = sorted(
        (q.data_id["patch"], q.index)
        for q in plain.quanta
        if q.task_label == "mergeMeasurements" and q.index not in hit
    )
    bands_of = {
        p: sorted(q.data_id["band"] for q in plain.quanta
                  if q.task_label == "measure" and q.data_id["patch"] == p)
        for p, _ in intact
    }  # fmt: skip
    patch = next(p for p, bands in bands_of.items() if len(bands) >= 2)
    pipeline = tmp_path / "faults.yaml"
    pipeline.write_text(
        yaml.safe_dump(
            {
                "imports": [{"location": "DRP-RC2"}],
                "tasks": {
                    "measure": {
                        "class": "rc2_platform.tasks.fault_injection.MeasureDroppingSourcesTask",
                        "config": {
                            "drop_last_source_in": [{"patch": patch, "band": bands_of[patch][-1]}]
                        },
                    }
                },
            }
        )
    )
    graph = _graph(repo, pipeline, survey.bootstrap)
    assert len(graph) == len(plain)
    expected["mergeMeasurements"] = _index(graph, "mergeMeasurements", patch=patch)
    graph_file = tmp_path / "faults.qgraph"
    save_graph(graph, graph_file)

    result = run_graph(graph_file, repo, options=RunOptions(jobs=2))
    assert result.status == "failed"
    report = build_report(repo, RUN)
    # The coadds without a usable PSF are among the candidates (at least the target's).
    coadds = report.errors and next(
        (e for e in report.errors if e["tasks"] == ["assembleCoadd"]), None
    )
    assert coadds, report.errors
    expected["assembleCoadd"] = {q["quantum"] for q in coadds["quanta"]}
    assert expected["assembleCoadd"] <= psf_candidates
    failed = set().union(*expected.values())
    blocked = graph.all_downstream(failed)
    assert {t: row["failed"] for t, row in report.tasks.items() if row["failed"]} == {
        t: len(v) for t, v in expected.items()
    }
    assert sum(row["blocked"] for row in report.tasks.values()) == len(blocked)
    assert sum(row["succeeded"] for row in report.tasks.values()) == len(graph) - len(failed) - len(
        blocked
    )

    groups = {e["tasks"][0]: e for e in report.errors}
    assert set(groups) == set(expected)
    assert all(len(e["tasks"]) == 1 and e["exception_type"] == "TaskDataError"
               for e in report.errors)  # fmt: skip
    assert groups["assembleCoadd"]["count"] == len(expected["assembleCoadd"])
    assert "no stars" in groups["characterizeImage"]["message"]
    assert "Unable to match sources" in groups["calibrate"]["message"]
    assert "no usable PSF" in groups["assembleCoadd"]["message"]
    merge = groups["mergeMeasurements"]["message"]
    assert "mismatched source ids" in merge and f"patch {patch}" in merge
    assert report.timing["assembleCoadd"]["failed"] >= len(expected["assembleCoadd"])

    out = CliRunner().invoke(main, ["report", str(repo), RUN])
    assert out.exit_code == 0, out.output
    assert f"{len(expected['assembleCoadd'])} failed [assembleCoadd] TaskDataError" in out.output
    assert "1 failed [mergeMeasurements] TaskDataError: mismatched source ids" in out.output
    assert "mean_seconds" in out.output and "total_seconds" in out.output
