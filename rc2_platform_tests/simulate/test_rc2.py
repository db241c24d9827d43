"""The metadata preset ``rc2`` at reduced size: header-only raws, calibrations, overlaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from rc2_platform.ingest.bootstrap_config import load_bootstrap_config
from rc2_platform.instrument import translate_header
from rc2_platform.simulate import _geometry as geo
from rc2_platform.simulate import simulate
from rc2_platform.simulate.headers import detector_updates
from rc2_platform.simulate.overlaps import count_tract_overlaps
from rc2_platform.simulate.plan import PlannedVisit


@pytest.fixture(scope="module")
def small_rc2(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("rc2") / "survey"
    return simulate("rc2", out, seed=3, scale=0.1, max_detectors=4)


def test_rc2_reduced_writes_header_only_raws(small_rc2) -> None:
    raws = sorted((small_rc2.root / "raw").rglob("*.fits"))
    # 3 tracts x 5 bands x max(1, round(n * 0.1)) visits; 4 detectors each.
    assert len(small_rc2.visits) == 5 * (1 + 3 + 5)
    assert len(raws) == small_rc2.raws == len(small_rc2.visits) * 4
    for path in raws[::9]:
        with fits.open(path) as hdus:
            assert len(hdus) == 1
            assert hdus[0].header["NAXIS"] == 0 and hdus[0].data is None
            rec = translate_header(hdus[0].header, str(path))
        assert rec.detector_id in small_rc2.detectors
        assert rec.binning == 1
    assert {v.tract for v in small_rc2.visits} == {9615, 9697, 9813}


def test_rc2_headers_match_the_instrument_header_writer(small_rc2) -> None:
    # The fast template path must give the same cards as make_raw_header for each detector.
    visit: PlannedVisit = small_rc2.visits[-1]
    for det in (0, 3, 50, 103):
        expected = geo.raw_header(visit, det, 1)
        path = small_rc2.root / "raw" / visit.physical_filter / f"{visit.visit:07d}"
        if det in small_rc2.detectors:
            actual = fits.getheader(path / f"HSC-{visit.visit:07d}-{det:03d}.fits")
        else:
            from rc2_platform.simulate.fastfits import HeaderTemplate

            template = HeaderTemplate(geo.raw_header(visit, small_rc2.detectors[0], 1))
            actual = fits.Header.fromstring(template.render(detector_updates(visit, det)).decode())
        for key in expected:
            if key in ("BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "BZERO", "BSCALE", "EXTEND"):
                continue
            if isinstance(expected[key], float):
                assert actual[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-15), key
            else:
                assert actual[key] == expected[key], key


def test_rc2_calibrations_and_bootstrap(small_rc2) -> None:
    config = load_bootstrap_config(small_rc2.bootstrap, check_files=True)
    # 4 detectors x (4 bias + 4 dark + 5 filters x 4 flat) epochs.
    assert len(config.calibrations) == 4 * 28
    header = fits.getheader(config.calibrations[0].file)
    assert header["NAXIS"] == 0 and header["OBSTYPE"] == "bias"
    assert config.tracts == [9615, 9697, 9813]
    assert config.skymap.name == "hsc_rings_v1"
    assert len(config.masks) == 3 * 81
    assert config.refcat is not None and len(config.refcat.shards) > 10


def test_full_rc2_plan_is_sized_like_the_seed() -> None:
    # Geometry only (no files): the full preset's overlaps with tract 9615.
    from rc2_platform.simulate import load_preset
    from rc2_platform.simulate.overlaps import preset_tract_overlaps

    preset = load_preset("rc2")
    assert sum(sum(p.visits_per_band.values()) for p in preset.tracts) == 432
    counts = preset_tract_overlaps(preset, 1, 9615)
    assert counts.patches == 81
    assert abs(counts.detector_exposures - 5067) / 5067 < 0.03
    assert abs(counts.visit_patches - 3351) / 3351 < 0.03


def test_overlap_counts_of_a_single_central_visit() -> None:
    tract = geo.skymap("hsc_rings_v1").tract(9615)
    visit = PlannedVisit(
        1, 9615, "i", "HSC-I", tract.ra, tract.dec, 0.0, 57000.0, 30.0, 31.0, 0.7, 0.0, 0
    )
    counts = count_tract_overlaps([visit], geo.science_detectors(), "hsc_rings_v1", 9615)
    assert counts.detector_exposures == 104
    assert 40 < counts.visit_patches <= 81
    far = PlannedVisit(
        2,
        9615,
        "i",
        "HSC-I",
        (tract.ra + 10) % 360,
        tract.dec,
        0.0,
        57000.0,
        30.0,
        31.0,
        0.7,
        0.0,
        0,
    )
    assert count_tract_overlaps([far], [0, 1], "hsc_rings_v1", 9615).detector_exposures == 0


def test_visit_times_are_near_transit(small_rc2) -> None:
    raws = sorted((small_rc2.root / "raw").rglob("*.fits"))
    zenith = np.array([translate_header(fits.getheader(p)).zenith_angle for p in raws[::4]])
    assert (zenith < 60).all()


def test_paths_in_bootstrap_are_relative(small_rc2) -> None:
    text = Path(small_rc2.bootstrap).read_text()
    assert str(small_rc2.root) not in text
