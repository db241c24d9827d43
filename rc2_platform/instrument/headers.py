"""Write realistic, complete HSC raw primary headers (for the survey simulator and tests).

:func:`make_raw_header` produces the keywords a real HSC raw carries (EXP-ID, FRAMEID,
DET-ID, FILTER01, DATE-OBS, UT/UT-STR/UT-END, MJD/MJD-STR/MJD-END, RA2000/DEC2000, RA/DEC,
INST-PA, EXPTIME, DARKTIME, DATA-TYP, OBJECT, BIN-FCT1/2, ALTITUDE, AZIMUTH, ...) plus a
TAN WCS of the raw pixel grid from :func:`~rc2_platform.instrument.wcs.detector_wcs`.
Its output round-trips through :func:`~rc2_platform.instrument.translator.translate_header`
and is accepted by astro_metadata_translator's HSC translator.
"""

from __future__ import annotations

import datetime as _dt
import math

from astropy.io import fits

from rc2_platform.errors import IngestError
from rc2_platform.instrument.camera import Camera, load_camera
from rc2_platform.instrument.wcs import detector_wcs

__all__ = ["frame_id", "make_raw_header"]

_UNIX_EPOCH = _dt.date(1970, 1, 1)
_MJD_UNIX_EPOCH = 40587
_DATA_TYPES = ("OBJECT", "BIAS", "DARK", "DOMEFLAT", "SKYFLAT", "FOCUSING")


def frame_id(exposure_id: int, detector_id: int) -> str:
    """HSC's FRAMEID for one CCD of one exposure: ``HSCA{(exp + det//100)*100 + det%100:08d}``."""
    return f"HSCA{(exposure_id + detector_id // 100) * 100 + detector_id % 100:08d}"


def make_raw_header(
    exposure_id: int,
    detector_id: int,
    physical_filter: str,
    mjd_start: float,
    exptime: float,
    ra: float,
    dec: float,
    rot: float,
    object_name: str,
    binning: int = 1,
    data_type: str = "OBJECT",
    darktime: float | None = None,
    science_program: str = "o12345",
    camera: Camera | None = None,
    with_wcs: bool = True,
) -> fits.Header:
    """Return a complete HSC-style raw primary header.

    Parameters
    ----------
    exposure_id : int
        Exposure (= visit) number, below 10**8; HSC's are even.
    detector_id : int
        Detector number (0..111).
    physical_filter : str
        ``HSC-G`` ... ``HSC-Y``, ``HSC-R2``, ``HSC-I2``.
    mjd_start : float
        UTC MJD of the start of the exposure (rounded to the millisecond).
    exptime : float
        Exposure time in seconds.
    ra, dec : float
        Boresight (tracking) position in degrees.
    rot : float
        Rotator position angle ``INST-PA`` in degrees.
    object_name : str
        ``OBJECT`` (target name), e.g. ``"SSP_UDEEP_COSMOS"``.
    binning : int
        On-chip binning (``BIN-FCT1/2``); NAXIS1/2 are the binned sizes.
    data_type : str
        ``DATA-TYP``: OBJECT, BIAS, DARK, DOMEFLAT, ...
    darktime : float, optional
        ``DARKTIME``; defaults to ``exptime``.
    science_program : str
        ``PROP-ID``.
    camera : `Camera`, optional
        Camera; the shipped HSC by default.
    with_wcs : bool
        Add the TAN WCS keywords of the raw pixel grid.
    """
    camera = camera or load_camera()
    det = camera.detector(detector_id)
    camera.band_of(physical_filter)
    if data_type.upper() not in _DATA_TYPES:
        raise IngestError(f"unknown DATA-TYP {data_type!r}; use one of {', '.join(_DATA_TYPES)}")
    if not 0 <= exposure_id < 10**8:
        raise IngestError(f"exposure id {exposure_id} does not fit HSC's 8-digit EXP-ID")
    darktime = exptime if darktime is None else darktime
    date, sod = _utc_from_mjd(mjd_start)
    mjd_start = _MJD_UNIX_EPOCH + (date - _UNIX_EPOCH).days + sod / 86400.0
    end_date, end_sod = _utc_from_mjd(mjd_start + exptime / 86400.0)
    mid_mjd = mjd_start + exptime / 2 / 86400.0
    alt, az = _alt_az(mid_mjd, ra, dec)
    ra_str, dec_str = _sexagesimal(ra % 360.0, hours=True), _sexagesimal(dec, hours=False)
    h = fits.Header()
    cards: list[tuple[str, object, str]] = [
        ("SIMPLE", True, "conforms to FITS standard"),
        ("BITPIX", 16, "array data type"),
        ("NAXIS", 2, "number of array dimensions"),
        ("NAXIS1", camera.detector_nx // binning, ""),
        ("NAXIS2", camera.detector_ny // binning, ""),
        ("BZERO", 32768, ""),
        ("BSCALE", 1, ""),
        ("BUNIT", "ADU", "unit of original pixel values"),
        ("BLANK", -32768, "value used for NULL pixels"),
        ("TELESCOP", "Subaru", "telescope/system which acquired data"),
        ("OBSERVAT", "NAOJ", "observatory"),
        ("INSTRUME", "Hyper Suprime-Cam", "name of instrument"),
        ("DETECTOR", f"{det.full_name}", "name of the detector/CCD"),
        ("DET-ID", det.id, "ID of the detector used for this data"),
        ("T_CCDSN", f"{det.id + 1000:04d}", "CCD serial number"),
        ("EXP-ID", f"HSCE{exposure_id:08d}", "ID of the exposure this data was taken"),
        ("FRAMEID", frame_id(exposure_id, det.id), "image sequential number"),
        ("OBS-MOD", "IMAG_N_VGW" if data_type.upper() == "OBJECT" else "CALIB", "observation mode"),
        ("DATA-TYP", data_type.upper(), "type / characteristics of this data"),
        ("OBJECT", object_name, "target name"),
        ("PROP-ID", science_program, "proposal ID"),
        ("OBSERVER", "rc2_platform simulator", "name(s) of observer(s)"),
        ("DATE-OBS", date.isoformat(), "observation start date (UT)"),
        ("UT", _hms(sod), "HH:MM:SS.SS typical UT at exposure"),
        ("UT-STR", _hms(sod), "HH:MM:SS.SS UT at exposure start"),
        ("UT-END", _hms(end_sod), "HH:MM:SS.SS UT at exposure end"),
        ("MJD", mjd_start, "modified Julian day at typical time"),
        ("MJD-STR", mjd_start, "MJD at exposure start"),
        ("MJD-END", mjd_start + exptime / 86400.0, "MJD at exposure end"),
        ("EXPTIME", float(exptime), "[sec] total integration time"),
        ("DARKTIME", float(darktime), "[sec] dark current integration time"),
        ("RADESYS", "FK5", "equatorial coordinate system"),
        ("EQUINOX", 2000.0, "standard FK5 (years)"),
        ("RA2000", ra_str, "HH:MM:SS.SSS RA (J2000) pointing"),
        ("DEC2000", dec_str, "+/-DD:MM:SS.SS DEC (J2000) pointing"),
        ("RA", ra_str, "HH:MM:SS.SSS RA of telescope pointing"),
        ("DEC", dec_str, "+/-DD:MM:SS.SS DEC of telescope pointing"),
        ("INST-PA", float(rot), "[deg] instrument position angle"),
        ("INR-STR", float(rot), "[deg] instrument rotator angle at start"),
        ("ALTITUDE", round(alt, 5), "[deg] altitude of telescope pointing"),
        ("AZIMUTH", round(az, 5), "[deg] azimuth of telescope pointing"),
        ("AIRMASS", round(1.0 / max(math.sin(math.radians(alt)), 0.05), 4), "typical airmass"),
        ("FILTER01", physical_filter, "filter name"),
        ("BIN-FCT1", binning, "binning factor of X axis"),
        ("BIN-FCT2", binning, "binning factor of Y axis"),
        ("GAIN", 3.0, "[e-/ADU] AD conversion factor"),
        ("OUT-HUM", 12.0, "[%] humidity measured at telescope outside"),
        ("OUT-TMP", 275.0, "[K] temperature measured at telescope outside"),
        ("OUT-PRS", 621.0, "[hPa] atmospheric pressure at telescope outside"),
        ("FOC-VAL", 3.6, "[mm] encoder value of focus unit"),
    ]
    for key, value, comment in cards:
        h[key] = (value, comment)
    if with_wcs:
        wcs = detector_wcs(ra, dec, rot, det.id, binning, camera)
        wcs_header = wcs.to_header()
        for key in ("CTYPE1", "CTYPE2", "CUNIT1", "CUNIT2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2"):
            h[key] = wcs_header[key]
        for i in range(2):
            for j in range(2):
                h[f"CD{i + 1}_{j + 1}"] = float(wcs.wcs.cd[i, j])
        h["LONPOLE"] = 180.0
    return h


def _sexagesimal(deg: float, hours: bool) -> str:
    value = deg / 15.0 if hours else deg
    sign = "-" if value < 0 else ("" if hours else "+")
    value = abs(value)
    d = int(value)
    m = int((value - d) * 60)
    s = (value - d - m / 60.0) * 3600.0
    if s >= 59.9995:  # avoid "60.000" after rounding
        s, m = 0.0, m + 1
        if m == 60:
            m, d = 0, d + 1
    return f"{sign}{d:02d}:{m:02d}:{s:06.3f}" if hours else f"{sign}{d:02d}:{m:02d}:{s:05.2f}"


def _utc_from_mjd(mjd: float) -> tuple[_dt.date, float]:
    day = math.floor(mjd)
    sod = round((mjd - day) * 86400.0, 3)
    if sod >= 86400.0:
        day, sod = day + 1, sod - 86400.0
    return _UNIX_EPOCH + _dt.timedelta(days=day - _MJD_UNIX_EPOCH), sod


def _hms(sod: float) -> str:
    ms = int(round(sod * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    return f"{h % 24:02d}:{m:02d}:{rem / 1000:06.3f}"


def _alt_az(mjd: float, ra: float, dec: float) -> tuple[float, float]:
    """Approximate altitude/azimuth (deg) at Subaru from GMST (good to ~0.1 deg)."""
    lat, lon = math.radians(19.825556), -155.476667
    gmst = (280.46061837 + 360.98564736629 * (mjd - 51544.5)) % 360.0
    ha = math.radians((gmst + lon - ra) % 360.0)
    d = math.radians(dec)
    sin_alt = math.sin(d) * math.sin(lat) + math.cos(d) * math.cos(lat) * math.cos(ha)
    alt = math.asin(max(-1.0, min(1.0, sin_alt)))
    az = math.atan2(
        -math.sin(ha) * math.cos(d),
        math.sin(d) * math.cos(lat) - math.cos(d) * math.sin(lat) * math.cos(ha),
    )
    return math.degrees(alt), math.degrees(az) % 360.0
