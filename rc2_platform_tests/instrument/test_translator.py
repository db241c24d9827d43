"""Header translation: a real-style HSC header, round trips, and bad headers."""

from __future__ import annotations

from pathlib import Path

import lsst.sphgeom as sphgeom
import pytest
from astropy.io import fits
from astropy.time import Time

from rc2_platform.core.timespan import time_to_nsec
from rc2_platform.errors import IngestError
from rc2_platform.instrument import (
    detector_regions,
    detector_wcs,
    frame_id,
    make_raw_header,
    tai_nsec_from_utc,
    translate_header,
)


def _real_style_header() -> fits.Header:
    """A primary header as HSC writes it for visit 12280, CCD 49 (COSMOS, HSC-I)."""
    cards = {
        "SIMPLE": True, "BITPIX": 16, "NAXIS": 2, "NAXIS1": 2144, "NAXIS2": 4241,
        "BZERO": 32768, "BSCALE": 1, "BUNIT": "ADU", "BLANK": -32768,
        "TELESCOP": "Subaru", "OBSERVAT": "NAOJ", "INSTRUME": "Hyper Suprime-Cam",
        "DETECTOR": "hanzo", "DET-ID": 49, "T_CCDID": 49, "T_CCDSN": "127",
        "EXP-ID": "HSCE00012280", "FRAMEID": "HSCA01228049", "OBS-MOD": "IMAG_N_VGW",
        "DATA-TYP": "OBJECT", "OBJECT": "SSP_UDEEP_COSMOS", "PROP-ID": "o14016",
        "DATE-OBS": "2015-01-21", "UT": "13:33:19.128", "UT-STR": "13:33:19.128",
        "UT-END": "13:38:19.278", "HST": "03:33:19.128", "MJD": 57043.56480472,
        "MJD-STR": 57043.56480472, "MJD-END": 57043.56827868,
        "EXPTIME": 300.0, "DARKTIME": 301.0, "RADESYS": "FK5", "EQUINOX": 2000.0,
        "RA2000": "10:00:28.600", "DEC2000": "+02:12:21.00",
        "RA": "10:00:28.600", "DEC": "+02:12:21.00",
        "INST-PA": 90.0, "INR-STR": -61.8, "ALTITUDE": 67.3, "AZIMUTH": 158.2,
        "AIRMASS": 1.083, "FILTER01": "HSC-I", "BIN-FCT1": 1, "BIN-FCT2": 1,
        "GAIN": 3.0, "FOC-VAL": 3.7, "OUT-HUM": 8.0, "OUT-TMP": 273.6, "OUT-PRS": 622.0,
    }  # fmt: skip
    header = fits.Header()
    for key, value in cards.items():
        header[key] = value
    return header


def test_real_style_header_translates(tmp_path: Path) -> None:
    path = tmp_path / "HSCA01228049.fits"
    fits.PrimaryHDU(header=_real_style_header()).writeto(path)
    header = fits.getheader(path)
    rec = translate_header(header, str(path))
    assert rec.data_id == {"instrument": "HSC", "exposure": 12280, "detector": 49}
    assert (rec.physical_filter, rec.band) == ("HSC-I", "i")
    assert rec.day_obs == 20150121
    assert rec.observation_type == "science" and rec.target_name == "SSP_UDEEP_COSMOS"
    begin = Time("2015-01-21T13:33:19.128", scale="utc")
    assert abs(rec.timespan.begin_nsec - time_to_nsec(begin)) < 1000  # float rounding only
    assert rec.timespan.end_nsec - rec.timespan.begin_nsec == 300 * 10**9
    assert rec.dark_time == 301.0 and rec.exposure_time == 300.0
    assert rec.tracking_ra == pytest.approx(150.119167, abs=1e-6)
    assert rec.tracking_dec == pytest.approx(2.205833, abs=1e-6)
    assert rec.zenith_angle == pytest.approx(22.7)
    # Region of that detector from the record contains a point near its centre.
    fp = detector_regions(rec.tracking_ra, rec.tracking_dec, rec.rotation_angle, [49])
    wcs = detector_wcs(rec.tracking_ra, rec.tracking_dec, rec.rotation_angle, 49, rec.binning)
    ra, dec = wcs.pixel_to_world_values(1023.5, 2087.5)
    assert fp.polygon(0, 0).contains(sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(ra, dec)))
    # CCD 49 sits ~0.35 deg from the boresight in this layout.
    assert 0.1 < abs(dec - rec.tracking_dec) + abs(ra - rec.tracking_ra) < 1.0


def test_fast_translator_agrees_with_astro_metadata_translator() -> None:
    header = _real_style_header()
    fast = translate_header(header)
    ref = translate_header(header, use_reference=True)
    for name in ("exposure_id", "detector_id", "physical_filter", "band", "day_obs",
                 "observation_type", "target_name", "obs_id", "exposure_time"):  # fmt: skip
        assert getattr(fast, name) == getattr(ref, name), name
    assert abs(fast.timespan.begin_nsec - ref.timespan.begin_nsec) < 1000
    assert fast.tracking_ra == pytest.approx(ref.tracking_ra, abs=1e-9)
    assert fast.rotation_angle == pytest.approx(ref.rotation_angle)


@pytest.mark.parametrize("detector_id", [0, 49, 103, 111])
@pytest.mark.parametrize("binning", [1, 4])
def test_make_raw_header_round_trips(detector_id: int, binning: int, tmp_path: Path) -> None:
    header = make_raw_header(
        exposure_id=1228, detector_id=detector_id, physical_filter="HSC-R2",
        mjd_start=57043.5648047, exptime=150.0, ra=216.5, dec=-0.35, rot=45.0,
        object_name="SSP_WIDE", binning=binning,
    )  # fmt: skip
    path = tmp_path / "raw.fits"
    fits.PrimaryHDU(header=header).writeto(path)
    rec = translate_header(fits.getheader(path), str(path))
    assert rec.data_id == {"instrument": "HSC", "exposure": 1228, "detector": detector_id}
    assert (rec.physical_filter, rec.band, rec.binning) == ("HSC-R2", "r", binning)
    expected_begin = time_to_nsec(Time(57043.5648047, format="mjd", scale="utc"))
    assert abs(rec.timespan.begin_nsec - expected_begin) <= 1_000_000  # 1 ms strings
    assert rec.tracking_ra == pytest.approx(216.5, abs=1e-6)
    assert rec.tracking_dec == pytest.approx(-0.35, abs=1e-6)
    assert rec.rotation_angle == 45.0
    assert header["NAXIS1"] == 2048 // binning
    ref = translate_header(header, use_reference=True)
    assert (ref.exposure_id, ref.detector_id) == (1228, detector_id)


def test_frame_id_fallback_when_det_id_missing() -> None:
    header = make_raw_header(12280, 105, "HSC-G", 57000.3, 30.0, 10.0, 0.0, 0.0, "FOCUS")
    assert header["FRAMEID"] == frame_id(12280, 105) == "HSCA01228105"
    del header["DET-ID"]
    assert translate_header(header).detector_id == 105
    header49 = _real_style_header()
    del header49["DET-ID"]
    assert translate_header(header49).detector_id == 49


def test_tai_conversion_matches_astropy() -> None:
    import datetime

    t = Time("2016-03-07T10:11:12.345", scale="utc")
    got = tai_nsec_from_utc(datetime.date(2016, 3, 7), 36672.345)
    assert got % 1_000_000 == 0  # exact integer arithmetic, no float residue
    assert abs(got - time_to_nsec(t)) < 1000
    # TAI - UTC was 36 s in 2016: the TAI label is 36 s later than the UTC one.
    tai_label = time_to_nsec(Time("2016-03-07T10:11:12.345", scale="tai"))
    assert abs(got - tai_label - 36 * 10**9) < 1000


def test_missing_date_obs_is_reported_with_file() -> None:
    header = _real_style_header()
    del header["DATE-OBS"]
    with pytest.raises(IngestError, match=r"DATE-OBS is missing in /data/raw\.fits"):
        translate_header(header, "/data/raw.fits")


def test_unknown_detector_is_reported() -> None:
    header = _real_style_header()
    header["DET-ID"] = 130
    with pytest.raises(IngestError, match=r"unknown detector 130 in x\.fits"):
        translate_header(header, "x.fits")


def test_unknown_filter_is_reported() -> None:
    header = _real_style_header()
    header["FILTER01"] = "NB0921"
    with pytest.raises(IngestError, match=r"unknown physical filter 'NB0921' in x\.fits"):
        translate_header(header, "x.fits")


@pytest.mark.parametrize(
    "key,value,match",
    [("EXP-ID", "XYZ", "EXP-ID='XYZ'"), ("UT-STR", "noon", "UT-STR='noon'"),
     ("EXPTIME", "long", "EXPTIME='long'")],
)  # fmt: skip
def test_malformed_values_are_reported(key: str, value: str, match: str) -> None:
    header = _real_style_header()
    header[key] = value
    with pytest.raises(IngestError, match=match):
        translate_header(header, "x.fits")
