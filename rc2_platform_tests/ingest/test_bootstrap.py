"""End-to-end bootstrap of the ``tiny`` survey on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import lsst.sphgeom as sphgeom
from click.testing import CliRunner

from rc2_platform.butler import Butler
from rc2_platform.cli import main
from rc2_platform.ingest import bootstrap, load_bootstrap_config
from rc2_platform.registry import Timespan
from rc2_platform.simulate import SimulationResult


def _expected_shards(butler: Butler, pixels: list[int]) -> set[int]:
    """Independently: shards whose HTM7 trixel overlaps a visit_detector_region."""
    htm = sphgeom.HtmPixelization(7)
    regions = [r["region"] for r in butler.query_dimension_records("visit_detector_region")]
    return {
        p for p in pixels
        if any(not (htm.pixel(p).relate(r) & sphgeom.DISJOINT) for r in regions)
    }  # fmt: skip


def test_tiny_bootstrap_matches_the_simulation_and_reruns_as_noop(
    tiny_survey: SimulationResult, db_url_sqlite_pg: str, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    summary = bootstrap(tiny_survey.bootstrap, repo, db_url_sqlite_pg, progress=False)
    assert not summary.failed
    config = load_bootstrap_config(tiny_survey.bootstrap)
    with Butler(repo) as butler:
        raws = butler.query_datasets("raw", collections="HSC/raw/all")
        assert len(raws) == tiny_survey.raws == 90
        assert len(butler.query_dimension_records("exposure")) == len(tiny_survey.visits)
        assert len(butler.query_dimension_records("visit")) == len(tiny_survey.visits)
        assert len(butler.query_dimension_records("visit_detector_region")) == tiny_survey.raws
        certified = sum(
            len(butler.registry.query_datasets(t, ["HSC/calib"], find_first=False))
            for t in ("bias", "dark", "flat")
        )
        assert certified == tiny_survey.calibrations
        pixels = [s.htm7 for s in config.refcat.shards] if config.refcat else []
        shards = butler.query_datasets("synth_refcat", collections="refcats")
        assert {int(r.data_id["htm7"]) for r in shards} == _expected_shards(butler, pixels)
        assert len(butler.query_datasets("brightObjectMask", collections="masks")) == 4
        assert butler.registry.get_collection_chain("HSC/defaults") == [
            "HSC/raw/all", "HSC/calib", "refcats", "masks", "skymaps",
        ]  # fmt: skip
        # A raw's calibration is found by its observation time through the chain.
        ref = raws[0]
        exp = butler.query_dimension_records(
            "exposure", where=f"exposure = {ref.data_id['exposure']}"
        )[0]
        found = butler.registry.find_calibrations(
            "bias", ["HSC/defaults"], [(ref.data_id, exp["timespan"])]
        )
        assert len(found) == 1
        assert isinstance(exp["timespan"], Timespan)
        sky = butler.get("skyMap", {"skymap": config.skymap.name}, collections="HSC/defaults")
        assert sky["config"]["name"] == config.skymap.config
        mask_id = {"skymap": config.skymap.name, "tract": 9813, "patch": 31}
        mask = butler.get("brightObjectMask", mask_id, collections="masks")
        assert mask["tract"] == 9813 and "circles" in mask
    again = bootstrap(tiny_survey.bootstrap, repo, progress=False)
    assert again.nothing_to_do
    assert again.skipped == summary.ingested
    assert "nothing to do" in again.message()


def test_bootstrap_cli_twice_says_nothing_to_do(
    tiny_survey: SimulationResult, tmp_path: Path
) -> None:
    runner = CliRunner()
    repo = str(tmp_path / "repo")
    first = runner.invoke(main, ["bootstrap", repo, str(tiny_survey.bootstrap)])
    assert first.exit_code == 0, first.output
    assert "bootstrapped" in first.output
    second = runner.invoke(main, ["bootstrap", repo, str(tiny_survey.bootstrap)])
    assert second.exit_code == 0, second.output
    assert "nothing to do" in second.output
    raws = runner.invoke(main, ["ingest-raws", repo, str(tiny_survey.root / "raw"), "--json"])
    assert raws.exit_code == 0, raws.output
    assert '"skipped": 90' in raws.output


def test_bootstrap_with_a_bad_config_exits_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bootstrap.yaml"
    bad.write_text("version: 1\nskymap: {name: x, config: nope}\n")
    result = CliRunner().invoke(main, ["bootstrap", str(tmp_path / "r"), str(bad)])
    assert result.exit_code == 1
    assert "nope" in result.output and "Traceback" not in result.output
