"""A real HSC header ingests correctly; bad files and calibrations are reported, the rest lands."""

from __future__ import annotations

from pathlib import Path

import lsst.sphgeom as sphgeom
import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time
from click.testing import CliRunner

from rc2_platform.butler import Butler
from rc2_platform.cli import main
from rc2_platform.core.timespan import time_to_nsec
from rc2_platform.ingest import (
    CalibrationEntry,
    define_visits,
    ingest_calibrations,
    ingest_raws,
    register_instrument,
)
from rc2_platform.instrument import detector_wcs, make_raw_header
from rc2_platform.simulate.fastfits import write_header_only
from rc2_platform_tests.instrument.test_translator import _real_style_header


@pytest.fixture
def butler(tmp_path: Path) -> Butler:
    b = Butler.create(tmp_path / "repo")
    register_instrument(b)
    return b


def _raw(path: Path, exposure: int, detector: int, **drop_or_set: object) -> Path:
    header = make_raw_header(exposure, detector, "HSC-R", 57460.4, 30.0, 150.1, 2.2, 0.0, "COSMOS",
                             binning=16)  # fmt: skip
    for key, value in drop_or_set.items():
        if value is None:
            del header[key.replace("_", "-")]
        else:
            header[key.replace("_", "-")] = value
    write_header_only(path, header)
    return path


def test_real_hsc_header_ingests_with_right_ids_time_and_region(
    butler: Butler, tmp_path: Path
) -> None:
    path = tmp_path / "HSCA01228049.fits"
    data = np.zeros((4241, 2144), dtype=np.int16)
    fits.PrimaryHDU(data=data, header=_real_style_header()).writeto(path)
    result = ingest_raws(butler, [path], transfer="copy")
    assert (result.ingested, result.failed) == (1, [])
    (exp,) = butler.query_dimension_records("exposure")
    assert (exp["exposure"], exp["physical_filter"], exp["day_obs"]) == (12280, "HSC-I", 20150121)
    begin = time_to_nsec(Time("2015-01-21T13:33:19.128", scale="utc"))
    assert abs(exp["timespan"].begin_nsec - begin) < 1000
    assert exp["timespan"].end_nsec - exp["timespan"].begin_nsec == 300 * 10**9
    (ref,) = butler.query_datasets("raw", collections="HSC/raw/all")
    assert dict(ref.data_id.to_dict()) == {"instrument": "HSC", "detector": 49, "exposure": 12280}
    assert define_visits(butler).ingested == 1
    (vdr,) = butler.query_dimension_records("visit_detector_region")
    wcs = detector_wcs(exp["tracking_ra"], exp["tracking_dec"], 90.0, 49)
    ra, dec = wcs.pixel_to_world_values(1023.5, 2087.5)
    assert vdr["region"].contains(sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(ra, dec)))
    # The patch/tract-free overlap with HTM7 pixels is materialized.
    assert butler.query_data_ids(["htm7", "visit", "detector"])


def test_bad_raws_are_reported_and_the_rest_is_ingested(butler: Butler, tmp_path: Path) -> None:
    good = [_raw(tmp_path / f"good{d}.fits", 1000, d) for d in (10, 11)]
    truncated = tmp_path / "truncated.fits"
    fits.PrimaryHDU(data=np.zeros((64, 64), np.int16),
                    header=make_raw_header(1002, 12, "HSC-R", 57460.41, 30.0, 150.1, 2.2, 0.0, "C",
                                           binning=16)).writeto(truncated)  # fmt: skip
    truncated.write_bytes(truncated.read_bytes()[:4000])
    no_date = _raw(tmp_path / "nodate.fits", 1004, 13, DATE_OBS=None)
    unknown = _raw(tmp_path / "unknown.fits", 1006, 14, DET_ID=150)
    garbage = tmp_path / "garbage.fits"
    garbage.write_bytes(b"not a fits file at all" * 10)
    files = [*good, truncated, no_date, unknown, garbage]
    result = ingest_raws(butler, files, transfer="copy")
    assert result.ingested == 2
    reasons = dict(result.failed)
    assert set(reasons) == {str(p) for p in (truncated, no_date, unknown, garbage)}
    assert "truncated" in reasons[str(truncated)]
    assert "DATE-OBS" in reasons[str(no_date)]
    assert "unknown detector 150" in reasons[str(unknown)]
    assert "not a readable FITS" in reasons[str(garbage)]
    # Nothing of the failed files is registered.
    assert {r["exposure"] for r in butler.query_dimension_records("exposure")} == {1000}
    # Ingesting the same files again is a no-op reported as skipped.
    again = ingest_raws(butler, good, transfer="copy")
    assert (again.ingested, again.skipped, again.failed) == (0, 2, [])
    assert len(butler.query_datasets("raw", collections="HSC/raw/all")) == 2


def test_same_data_id_twice_in_one_call_is_reported(butler: Butler, tmp_path: Path) -> None:
    a = _raw(tmp_path / "a.fits", 1000, 10)
    b = _raw(tmp_path / "b.fits", 1000, 10)
    result = ingest_raws(butler, [a, b], transfer="copy")
    assert result.ingested == 1
    assert result.failed[0][0] == str(b) and "same data ID" in result.failed[0][1]


def test_cli_exits_1_when_every_file_failed_and_3_when_some_did(
    butler: Butler, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"x" * 100)
    runner = CliRunner()
    result = runner.invoke(main, ["ingest-raws", str(butler.root), str(bad)])
    assert result.exit_code == 1
    assert "bad.fits" in result.output
    good = _raw(tmp_path / "good.fits", 1000, 10)
    result = runner.invoke(main, ["ingest-raws", str(butler.root), str(bad), str(good)])
    assert result.exit_code == 3, result.output
    assert "bad.fits" in result.stderr and "good.fits" not in result.stderr


def _calib(tmp_path: Path, name: str, detector: int, begin: str, end: str) -> CalibrationEntry:
    path = tmp_path / f"{name}-{detector}-{begin[:10]}.fits"
    fits.PrimaryHDU(data=np.zeros((8, 8), np.float32)).writeto(path)
    return CalibrationEntry(dataset_type=name, detector=detector, file=path,
                            valid_begin=begin, valid_end=end)  # fmt: skip


def test_overlapping_calibrations_refuse_the_whole_manifest(butler: Butler, tmp_path: Path) -> None:
    ok1 = _calib(tmp_path, "bias", 10, "2016-01-01T00:00:00", "2016-03-01T00:00:00")
    ok2 = _calib(tmp_path, "bias", 11, "2016-01-01T00:00:00", "2016-03-01T00:00:00")
    clash = _calib(tmp_path, "bias", 10, "2016-02-01T00:00:00", "2016-04-01T00:00:00")
    result = ingest_calibrations(butler, [ok1, ok2, clash])
    assert result.ingested == 0
    assert [f for f, _ in result.failed] == [str(clash.file)]
    assert str(ok1.file) in result.failed[0][1] and "overlaps" in result.failed[0][1]
    assert "HSC/calib" not in butler.registry.query_collections()
    assert ingest_calibrations(butler, [ok1, ok2]).ingested == 2
    # Against what is already certified: the whole manifest is rolled back, naming the entry.
    later = _calib(tmp_path, "bias", 11, "2016-03-01T00:00:00", "2016-06-01T00:00:00")
    second = ingest_calibrations(butler, [later, clash])
    assert second.ingested == 0 and [f for f, _ in second.failed] == [str(clash.file)]
    assert "overlaps" in second.failed[0][1]
    assert not {"HSC/calib/20160201", "HSC/calib/20160301"} & set(
        butler.registry.query_collections()
    )
    # Re-running the good ones changes nothing; the new one is certified.
    third = ingest_calibrations(butler, [ok1, ok2, later])
    assert (third.skipped, third.ingested) == (2, 1)
