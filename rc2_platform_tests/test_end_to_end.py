"""End to end on the ``tiny`` survey: bootstrap → graph → run → report → validate.

One raw is made all-NaN before the first run: exactly its isr quantum fails, everything
that needs it is blocked, the rest succeeds. The raw is then restored and the run resumed:
the remaining quanta complete without redoing work, every output exists in the registry
and the datastore, and the measured catalogs pass validation against the truth.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from rc2_platform.butler import Butler
from rc2_platform.execution.report import build_report
from rc2_platform.execution.runner import RunOptions, run_graph
from rc2_platform.graph import QuantumGraphBuilder, load_graph, save_graph
from rc2_platform.ingest import bootstrap, load_bootstrap_config
from rc2_platform.pipeline import Pipeline
from rc2_platform.simulate import SimulationResult
from rc2_platform.validate import validate_run

RUN = "u/test/e2e"

pytestmark = pytest.mark.slow


def test_tiny_survey_end_to_end_with_a_failure_and_resume(
    tiny_survey: SimulationResult, tmp_path: Path
) -> None:
    # Work on a private copy of the survey: this test damages one raw.
    survey_dir = tmp_path / "survey"
    shutil.copytree(tiny_survey.root, survey_dir, symlinks=True)
    config_path = survey_dir / tiny_survey.bootstrap.name
    config = load_bootstrap_config(config_path)
    repo = tmp_path / "repo"
    bootstrap(config_path, repo, progress=False)

    bad_raw = sorted(config.raws.iter_files())[0]
    original = bad_raw.read_bytes()
    with warnings.catch_warnings():
        # Replacing integer pixels by NaN leaves BLANK behind; astropy warns on close.
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        hdus = fits.open(bad_raw, mode="update")
        hdu = next(h for h in hdus if h.data is not None)
        hdu.data = np.full(hdu.data.shape, np.nan, dtype=np.float32)
        hdus.close()
    bad_header = fits.getheader(bad_raw)

    with Butler(repo) as butler:
        graph = QuantumGraphBuilder(
            butler,
            Pipeline.from_yaml("DRP-RC2"),
            input_collections=[config.collections.defaults],
            output_run=RUN,
            where="skymap = :skymap AND tract = :tract",
            bind={"skymap": config.skymap.name, "tract": config.tracts[0]},
        ).build()
    graph_file = tmp_path / "tiny.qgraph"
    save_graph(graph, graph_file)
    graph = load_graph(graph_file)

    first = run_graph(graph_file, repo, options=RunOptions(jobs=2))
    assert first.status == "failed"
    report = build_report(repo, RUN)
    failed = {t: row["failed"] for t, row in report.tasks.items() if row["failed"]}
    assert failed == {"isr": 1}
    (error,) = report.errors
    assert error["tasks"] == ["isr"]
    assert "no finite pixel" in error["message"]
    failed_index = next(
        q.index
        for q in graph.quanta
        if q.task_label == "isr"
        and q.data_id["exposure"] == int(str(bad_header["EXP-ID"])[4:])
        and q.data_id["detector"] == int(bad_header["DET-ID"])
    )
    downstream = graph.all_downstream([failed_index])
    assert sum(row["blocked"] for row in report.tasks.values()) == len(downstream)
    assert sum(row["succeeded"] for row in report.tasks.values()) == len(graph) - 1 - len(
        downstream
    )

    # A succeeded quantum's metadata file must not be rewritten by the resume.
    kept = next(q for q in graph.quanta if q.index not in downstream and q.index != failed_index)
    kept_meta = next(r for name, refs in kept.outputs.items() if name == "metadata" for r in refs)
    with Butler(repo) as butler:
        kept_path = butler.datastore.path_for(kept_meta)
    kept_mtime = kept_path.stat().st_mtime_ns

    bad_raw.write_bytes(original)
    second = run_graph(graph_file, repo, options=RunOptions(jobs=2, resume=True))
    assert second.status == "succeeded"
    assert kept_path.stat().st_mtime_ns == kept_mtime

    final = build_report(repo, RUN)
    assert sum(row["succeeded"] for row in final.tasks.values()) == len(graph)
    assert sum(row["failed"] + row["blocked"] for row in final.tasks.values()) == 0

    with Butler(repo) as butler:
        outputs = [r for q in graph.quanta for r in q.all_outputs()]
        records = butler.datastore_records(outputs)
        assert len(records) == len(outputs)
        assert all(butler.datastore.exists(r, records[r.id]) for r in outputs)

    assert config.truth is not None
    validation = validate_run(repo, RUN, config.truth, png=tmp_path / "validation.png")
    assert validation.passed, validation.rows()
    assert (tmp_path / "validation.png").stat().st_size > 10_000
