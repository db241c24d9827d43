"""Calibration manifests are all or nothing, and every file is read before certification.

Each case is one manifest with one bad entry among good ones, fed to ``rc2 ingest-calibs``
on SQLite and PostgreSQL: exit 1, every bad file named on stderr, nothing ingested or
certified (no dataset, no new RUN), registry and disk still agree, and the good entries
alone then ingest cleanly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import yaml
from astropy.io import fits
from click.testing import CliRunner, Result

from rc2_platform.butler import Butler
from rc2_platform.cli import main
from rc2_platform.ingest import register_instrument
from rc2_platform_tests.databases import scratch_database
from rc2_platform_tests.hostile.conftest import expect_cli_refusal
from rc2_platform_tests.hostile.crash_support import expect_consistent

if TYPE_CHECKING:
    from rc2_platform.simulate import SimulationResult

GOOD = [
    ("bias", 10, None, "2016-01-01T00:00:00", "2016-03-01T00:00:00"),
    ("bias", 11, None, "2016-01-01T00:00:00", "2016-03-01T00:00:00"),
    ("flat", 10, "HSC-R", "2016-01-01T00:00:00", "2016-03-01T00:00:00"),
]


@pytest.fixture(params=("sqlite", "postgresql"))
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    with scratch_database(request.param, tmp_path) as url:
        root = tmp_path / "repo"
        with Butler.create(root, None if request.param == "sqlite" else url) as butler:
            register_instrument(butler)
        yield root


def _write_fits(path: Path, data: np.ndarray | None = None) -> Path:
    fits.PrimaryHDU(data=np.ones((16, 12), np.float32) if data is None else data).writeto(path)
    return path


def _entry(folder: Path, kind: str, det: int, filt: str | None, begin: str, end: str,
           name: str | None = None) -> dict[str, object]:  # fmt: skip
    path = folder / (name or f"{kind}-{det}-{filt}-{begin[:10]}.fits")
    if not path.exists():
        _write_fits(path)
    return {"dataset_type": kind, "detector": det, "physical_filter": filt,
            "file": str(path), "valid_begin": begin, "valid_end": end}  # fmt: skip


def _truncated(path: Path) -> None:
    _write_fits(path, np.ones((64, 64), np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


#: name -> (what to do to the bad entry's file, text expected in the message)
BAD_FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated": (_truncated, "not a readable"),
    "empty": (lambda p: p.write_bytes(b""), "not a readable"),
    "text": (lambda p: p.write_text("SIMPLE = T\nthis is not FITS\n"), "not a readable"),
    "one_dimensional": (lambda p: _write_fits(p, np.ones(10, np.float32)), "not a"),
    "header_only": (lambda p: fits.PrimaryHDU().writeto(p), "not a"),
    "zero_rows": (lambda p: _write_fits(p, np.ones((0, 8), np.float32)), "not a"),
}


def _manifest(manifest: list[dict[str, object]], folder: Path) -> Path:
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def _ingest(repo: Path, manifest: list[dict[str, object]], folder: Path) -> Result:
    """Ingest a manifest that must be accepted."""
    return CliRunner().invoke(main, ["ingest-calibs", str(repo), str(_manifest(manifest, folder))])


def _refused(repo: Path, manifest: list[dict[str, object]], folder: Path) -> str:
    """Ingest a manifest that must be refused (tallied); its output."""
    path = _manifest(manifest, folder)
    result = expect_cli_refusal(["ingest-calibs", repo, path])
    assert result.exit_code == 1, result.output
    return result.output


def _nothing_certified(repo: Path) -> None:
    with Butler(repo) as butler:
        reg = butler.registry
        assert not [c for c in reg.query_collections() if "/2016" in c]
        for name in ("bias", "flat", "dark"):
            try:
                assert reg.query_datasets(name, reg.query_collections(), find_first=False) == []
            except Exception as exc:  # dataset type never registered: fine
                assert "bias" in str(exc) or "flat" in str(exc) or "dark" in str(exc)
    expect_consistent(repo, "refused calibration manifest")


@pytest.mark.parametrize("bad", sorted(BAD_FILES))
def test_calibration_unreadable_file_refuses_the_manifest(
    repo: Path, tmp_path: Path, bad: str
) -> None:
    make_bad, expected = BAD_FILES[bad]
    good = [_entry(tmp_path, *g) for g in GOOD]
    bad_path = tmp_path / f"bias-12-{bad}.fits"
    make_bad(bad_path)
    entry = {**good[0], "detector": 12, "file": str(bad_path)}
    stderr = _refused(repo, [*good, entry], tmp_path)
    assert str(bad_path) in stderr and expected in stderr and "Traceback" not in stderr
    assert "nothing of this manifest" in stderr
    _nothing_certified(repo)
    assert _ingest(repo, good, tmp_path).exit_code == 0


OVERLAPS = {
    # name -> the clashing entry, overlapping GOOD[0] (bias, detector 10)
    "inside": ("bias", 10, None, "2016-02-01T00:00:00", "2016-04-01T00:00:00"),
    "identical": ("bias", 10, None, "2016-01-01T00:00:00", "2016-03-01T00:00:00"),
    "unbounded": ("bias", 10, None, None, None),
    "contained": ("bias", 10, None, "2016-01-15T00:00:00", "2016-01-16T00:00:00"),
}


@pytest.mark.parametrize("kind", sorted(OVERLAPS))
def test_calibration_overlap_inside_a_manifest_refuses_it(
    repo: Path, tmp_path: Path, kind: str
) -> None:
    good = [_entry(tmp_path, *g) for g in GOOD]
    t, det, filt, begin, end = OVERLAPS[kind]
    clash = _entry(tmp_path, t, det, filt, begin or "", end or "", name=f"clash-{kind}.fits")
    clash.update(valid_begin=begin, valid_end=end)
    stderr = _refused(repo, [*good, clash], tmp_path)
    assert str(clash["file"]) in stderr and str(good[0]["file"]) in stderr
    assert "overlaps" in stderr
    _nothing_certified(repo)


def test_calibration_overlap_with_existing_certification_rolls_back_everything(
    repo: Path, tmp_path: Path
) -> None:
    good = [_entry(tmp_path, *g) for g in GOOD]
    assert _ingest(repo, good[:1], tmp_path).exit_code == 0
    later = _entry(tmp_path, "bias", 11, None, "2016-05-01T00:00:00", "2016-06-01T00:00:00")
    clash = _entry(tmp_path, "bias", 10, None, "2016-02-01T00:00:00", "2016-04-01T00:00:00")
    assert str(clash["file"]) in _refused(repo, [later, clash], tmp_path)
    with Butler(repo) as butler:
        collections = butler.registry.query_collections()
        assert "HSC/calib/20160501" not in collections and "HSC/calib/20160201" not in collections
        refs = butler.registry.query_datasets("bias", ["HSC/calib"], find_first=False)
        assert [int(r.data_id["detector"]) for r in refs] == [10]
    expect_consistent(repo, "rolled-back calibration manifest")


def test_calibration_truncated_file_in_a_bootstrap_refuses_its_calibrations(
    tiny_survey: SimulationResult, tmp_path: Path
) -> None:
    """``rc2 bootstrap`` exits 3: every other step is done, no calibration is certified."""
    survey = tiny_survey.root
    data = yaml.safe_load((survey / "bootstrap.yaml").read_text())
    for key in ("calibrations", "masks"):
        data[key] = [{**c, "file": str(survey / c["file"])} for c in data[key]]
    data["refcat"]["shards"] = [
        {**s, "file": str(survey / s["file"])} for s in data["refcat"]["shards"]
    ]
    data["raws"]["paths"] = [str(survey / p) for p in data["raws"]["paths"]]
    data["truth"] = str(survey / data["truth"])
    bad = tmp_path / "bias-truncated.fits"
    whole = Path(data["calibrations"][0]["file"]).read_bytes()
    bad.write_bytes(whole[: len(whole) - 2880])
    data["calibrations"][0]["file"] = str(bad)
    config = tmp_path / "bootstrap.yaml"
    config.write_text(yaml.safe_dump(data))
    repo = tmp_path / "repo"
    result = expect_cli_refusal(["bootstrap", repo, config])
    assert result.exit_code == 3, result.output
    failures = [line for line in result.output.splitlines() if line.startswith("failed")]
    assert failures and all("[calibrations]" in line for line in failures)
    assert str(bad) in failures[0] and "not a readable" in failures[0]
    _nothing_certified(repo)
    with Butler(repo) as butler:
        assert butler.registry.query_datasets("raw", ["HSC/raw/all"], find_first=False)


@pytest.mark.parametrize(
    "point", ["datastore.transaction.committed:1", "datastore.ingest.source_deleted:1"]
)
def test_calibration_move_killed_after_its_commit_rerun_finishes_it(
    repo: Path, tmp_path: Path, point: str
) -> None:
    """rc2 ingest-calibs --transfer move SIGKILLed after its commit, then the same command."""
    import os
    import re
    import subprocess
    import sys

    good = [_entry(tmp_path, *g) for g in GOOD]
    files = [Path(str(e["file"])) for e in good]
    path = _manifest(good, tmp_path)
    args = [str(Path(sys.executable).parent / "rc2"), "ingest-calibs", str(repo), str(path)]
    args += ["--transfer", "move"]
    env = {**os.environ, "RC2_KILL_AT": point}
    killed = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    assert killed.returncode == -9, killed.stderr
    left = [f for f in files if f.exists()]
    assert len(left) == (3 if "committed" in point else 2)
    again = subprocess.run(args, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
    said = re.findall(r"finishing (\d+) `move` ingest\(s\) killed after their commit", again.stderr)
    assert sum(map(int, said)) == len(left), again.stderr  # one line per validity group
    assert not any(f.exists() for f in files)
    with Butler(repo) as butler:
        assert len(butler.registry.query_certifications("HSC/calib", "bias")) == 2
    expect_consistent(repo, f"ingest-calibs --transfer move killed at {point}", kill=True)
