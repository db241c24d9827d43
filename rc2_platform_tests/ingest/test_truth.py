"""The truth catalog as dataset ``truth_catalog``: bootstrap records it, validation finds it."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from rc2_platform.butler import Butler
from rc2_platform.cli import main
from rc2_platform.ingest import bootstrap, find_truth, ingest_truth
from rc2_platform.simulate import SimulationResult


def test_bootstrap_records_the_truth_and_validate_needs_no_truth_option(
    tiny_survey: SimulationResult, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    summary = bootstrap(tiny_survey.bootstrap, repo, processes=1, progress=False)
    truth = next(r for r in summary.results if r.step == "truth")
    assert truth.ingested == 1 and truth.collection == "HSC/truth"
    with Butler(repo) as butler:
        path = find_truth(butler)
        assert (
            path is not None
            and path.read_bytes() == (Path(tiny_survey.root) / "truth.fits").read_bytes()
        )
        # Idempotent; and a survey without truth (path None) ingests nothing.
        assert ingest_truth(butler, path, instrument="HSC").skipped == 1
        assert ingest_truth(butler, None, instrument="HSC").ingested == 0
    # rc2 validate finds the truth in the repository: its error is about the catalogs now.
    result = CliRunner().invoke(main, ["validate", str(repo), "HSC/runs/none"])
    assert result.exit_code != 0
    assert "no truth catalog" not in result.output and "deepCoadd_forced_src" in result.output


def test_repository_without_truth_has_none(tmp_path: Path) -> None:
    with Butler.create(tmp_path / "repo") as butler:
        assert find_truth(butler) is None
