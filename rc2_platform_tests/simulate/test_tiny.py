"""The pixel preset ``tiny``: determinism, real HSC raws, pixels that match the truth."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS, FITSFixedWarning

from rc2_platform.core.timespan import Timespan
from rc2_platform.ingest.bootstrap_config import BootstrapConfig, load_bootstrap_config
from rc2_platform.instrument import translate_header
from rc2_platform.simulate import SimulationResult, read_mask_file, read_shard, read_truth, simulate
from rc2_platform.simulate.refcat import htm7_index


def _config(survey: SimulationResult) -> BootstrapConfig:
    return load_bootstrap_config(survey.bootstrap, check_files=True)


def _raws(survey: SimulationResult) -> list[Path]:
    return sorted((survey.root / "raw").rglob("*.fits"))


def test_tiny_writes_expected_counts(tiny_survey: SimulationResult) -> None:
    config = _config(tiny_survey)
    raws = _raws(tiny_survey)
    assert len(tiny_survey.detectors) == 6
    assert len(raws) == tiny_survey.raws == len(tiny_survey.visits) * 6
    assert {v.band for v in tiny_survey.visits} == {"g", "r", "i", "z", "y"}
    per_band = {b: sum(v.band == b for v in tiny_survey.visits) for b in "grizy"}
    assert all(2 <= n <= 3 for n in per_band.values())
    assert config.tracts == [9813]
    assert config.skymap.config == "hsc_rings_v1_tiny"
    assert [(m.tract, m.patch) for m in config.masks] == [(9813, p) for p in (31, 32, 40, 41)]
    # 2 bias epochs + 1 dark epoch per detector, 1 flat per detector and filter.
    assert len(config.calibrations) == 6 * (2 + 1 + 5)


def test_same_seed_gives_identical_truth_and_raws(
    tiny_survey: SimulationResult, tmp_path: Path
) -> None:
    # A partial re-run (2 detectors) must reproduce the same files byte for byte in pixels
    # and headers: every raw has its own random stream.
    again = simulate("tiny", tmp_path / "again", seed=1, max_detectors=2)
    t1, t2 = read_truth(tiny_survey.root / "truth.fits"), read_truth(again.root / "truth.fits")
    assert len(t1) == len(t2) == 440
    for col in ("id", "ra", "dec", "g_mag", "y_mag", "is_star"):
        np.testing.assert_array_equal(t1[col], t2[col])
    rel = sorted(p.relative_to(again.root) for p in (again.root / "raw").rglob("*.fits"))
    assert len(rel) == len(again.visits) * 2
    for path in rel[:6]:
        a, b = fits.open(tiny_survey.root / path), fits.open(again.root / path)
        np.testing.assert_array_equal(a[0].data, b[0].data)
        assert a[0].header.tostring() == b[0].header.tostring()
    other = simulate("tiny", tmp_path / "other", seed=2, max_detectors=1)
    t3 = read_truth(other.root / "truth.fits")
    assert not np.array_equal(np.asarray(t1["ra"]), np.asarray(t3["ra"][: len(t1)]))


def test_raws_are_hsc_files_the_translator_accepts(tiny_survey: SimulationResult) -> None:
    by_visit = {v.visit: v for v in tiny_survey.visits}
    for path in _raws(tiny_survey)[::7]:
        with fits.open(path) as hdus:
            header, data = hdus[0].header, hdus[0].data
        rec = translate_header(header, str(path))
        visit = by_visit[rec.exposure_id]
        assert rec.physical_filter == visit.physical_filter
        assert rec.band == visit.band
        assert rec.binning == 8
        assert header["BIN-FCT1"] == header["BIN-FCT2"] == 8
        assert rec.detector_id in tiny_survey.detectors
        assert data.dtype == np.uint16
        assert data.shape == (522, 256 + 16)
        assert header["DATASEC"] == "[1:256,1:522]"
        assert header["BIASSEC"] == "[257:272,1:522]"
        assert rec.timespan.end_nsec - rec.timespan.begin_nsec == int(30e9)


def _calib_for(config: BootstrapConfig, ctype: str, det: int, filt: str | None, nsec: int) -> list:
    found = []
    for cal in config.calibrations:
        if cal.dataset_type != ctype or cal.detector != det or cal.physical_filter != filt:
            continue
        span = Timespan.from_times(
            Time(cal.valid_begin, scale="tai") if cal.valid_begin else None,
            Time(cal.valid_end, scale="tai") if cal.valid_end else None,
        )
        if span.contains(nsec):
            found.append(cal)
    return found


def test_calibration_validity_covers_every_raw(tiny_survey: SimulationResult) -> None:
    config = _config(tiny_survey)
    used_bias = set()
    for path in _raws(tiny_survey):
        rec = translate_header(fits.getheader(path), str(path))
        det, begin = rec.detector_id, rec.timespan.begin_nsec
        bias = _calib_for(config, "bias", det, None, begin)
        assert len(bias) == 1, path
        used_bias.add(bias[0].file)
        assert len(_calib_for(config, "dark", det, None, begin)) == 1
        assert len(_calib_for(config, "flat", det, rec.physical_filter, begin)) == 1
    # Both bias epochs are needed: picking by time matters.
    assert len(used_bias) == 2 * len(tiny_survey.detectors)


def _isr(survey: SimulationResult, path: Path) -> tuple[np.ndarray, fits.Header]:
    config = _config(survey)
    header = fits.getheader(path)
    raw = fits.getdata(path).astype(float)
    rec = translate_header(header)
    nx = 256
    overscan = np.median(raw[:, nx + 2 :], axis=1)
    image = raw[:, :nx] - overscan[:, None]

    def master(ctype: str, filt: str | None) -> np.ndarray:
        (cal,) = _calib_for(config, ctype, rec.detector_id, filt, rec.timespan.begin_nsec)
        return fits.getdata(cal.file).astype(float)

    image -= master("bias", None)
    image -= master("dark", None) * header["DARKTIME"]
    flat = master("flat", rec.physical_filter)
    with np.errstate(divide="ignore", invalid="ignore"):
        image = np.where(flat > 0, image / flat, np.nan)
    return image, header


def test_truth_star_lands_on_predicted_pixel_with_right_flux(tiny_survey: SimulationResult) -> None:
    truth = read_truth(tiny_survey.root / "truth.fits")
    zps = Table.read(tiny_survey.root / "truth.fits", hdu="ZEROPOINTS")
    zp = dict(zip(zps["band"], zps["zero_point"], strict=True))
    visit = next(v for v in tiny_survey.visits if v.band == "r")
    checked = 0
    for det in tiny_survey.detectors:
        path = next(
            (tiny_survey.root / "raw" / "HSC-R" / f"{visit.visit:07d}").glob(f"*-{det:03d}.fits")
        )
        image, header = _isr(tiny_survey, path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header)
        x, y = wcs.all_world2pix(np.asarray(truth["ra"]), np.asarray(truth["dec"]), 0)
        mag = np.asarray(truth["r_mag"])
        ny, nx = image.shape
        for k in np.flatnonzero((mag > 18.5) & (mag < 20.0) & truth["is_star"]):
            if not (15 < x[k] < nx - 15 and 15 < y[k] < ny - 15):
                continue
            near = np.hypot(x - x[k], y - y[k]) < 12
            if (mag[near] < 23.0).sum() > 1:
                continue  # a neighbour would bias the measurement
            xi, yi = int(round(x[k])), int(round(y[k]))
            stamp = image[yi - 8 : yi + 9, xi - 8 : xi + 9]
            if not np.isfinite(stamp).all():
                continue
            sky = np.median(
                np.concatenate(
                    [image[yi - 14 : yi + 15, xi - 14], image[yi - 14 : yi + 15, xi + 14]]
                )
            )
            stamp = stamp - sky
            yy, xx = np.mgrid[yi - 8 : yi + 9, xi - 8 : xi + 9]
            core = np.hypot(xx - x[k], yy - y[k]) < 4
            w = np.clip(stamp, 0, None) * core
            cx, cy = (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()
            assert abs(cx - x[k]) < 0.1 and abs(cy - y[k]) < 0.1, (path, cx, x[k], cy, y[k])
            expected = 10 ** (-0.4 * (mag[k] - zp["r"])) * header["EXPTIME"]
            measured = stamp[np.hypot(xx - x[k], yy - y[k]) < 7].sum()
            assert measured == pytest.approx(expected, rel=0.05), (path, k)
            checked += 1
    assert checked >= 3


def test_some_raws_have_saturated_stars_and_defects(tiny_survey: SimulationResult) -> None:
    saturated = 0
    for path in _raws(tiny_survey):
        data = fits.getdata(path)
        saturated += int((data[:, :256] >= 60000).any())
    assert saturated >= 1
    defects = Table.read(tiny_survey.root / "truth.fits", hdu="DEFECTS")
    assert len(defects) == 2 * len(tiny_survey.detectors)
    config = _config(tiny_survey)
    flat = next(
        c
        for c in config.calibrations
        if c.dataset_type == "flat" and c.detector == defects["detector"][0]
    )
    assert (fits.getdata(flat.file)[:, defects["column"][0]] == 0).all()


def test_refcat_shards_and_masks(tiny_survey: SimulationResult) -> None:
    config = _config(tiny_survey)
    assert config.refcat is not None and config.refcat.name == "synth_refcat"
    truth = read_truth(tiny_survey.root / "truth.fits")
    total = 0
    for shard in config.refcat.shards:
        table = read_shard(shard.file)
        assert table["ra"].unit == "deg" and table["i_mag"].unit == "mag"
        assert {f"{b}_mag_err" for b in "grizy"} <= set(table.colnames)
        assert set(htm7_index(np.asarray(table["ra"]), np.asarray(table["dec"]))) == {shard.htm7}
        total += len(table)
    assert total == int(truth["is_star"].sum())
    circles = [c for m in config.masks for c in read_mask_file(m.file)]
    assert circles, "the brightest stars get mask circles"
    bright_ids = set(truth["id"][(truth["i_mag"] < 18.0) & truth["is_star"]])
    assert {c.id for c in circles} <= bright_ids
    assert all(c.radius_arcsec >= 10.0 for c in circles)
