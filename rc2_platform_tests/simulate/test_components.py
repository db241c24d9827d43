"""Building blocks: PSF rendering, header formatting, masks, presets, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from rc2_platform.errors import ConfigError
from rc2_platform.simulate import load_preset, read_mask_file
from rc2_platform.simulate._random import rng_for
from rc2_platform.simulate.fastfits import HeaderTemplate, format_card
from rc2_platform.simulate.masks import MaskCircle, write_mask_file
from rc2_platform.simulate.plan import calib_epoch_index, dither_offsets
from rc2_platform.simulate.render import fwhm_to_sigma, render_sources


def test_rendered_sources_conserve_flux_and_centre() -> None:
    image = render_sources((41, 41), np.array([20.3]), np.array([19.6]), np.array([1000.0]), 1.2)
    assert image.sum() == pytest.approx(1000.0, rel=1e-6)
    yy, xx = np.mgrid[0:41, 0:41]
    assert (image * xx).sum() / image.sum() == pytest.approx(20.3, abs=1e-3)
    assert (image * yy).sum() / image.sum() == pytest.approx(19.6, abs=1e-3)
    assert fwhm_to_sigma(2.3548200450309493) == pytest.approx(1.0)


def test_random_streams_depend_only_on_keys() -> None:
    a = rng_for(1, "raw", 1000, 8).random(3)
    assert np.array_equal(a, rng_for(1, "raw", 1000, 8).random(3))
    assert not np.array_equal(a, rng_for(1, "raw", 1000, 9).random(3))
    assert not np.array_equal(a, rng_for(2, "raw", 1000, 8).random(3))


def test_header_template_round_trips_through_astropy() -> None:
    header = fits.Header(
        [("OBJECT", "COSMOS", "target"), ("CRPIX1", 1.5), ("DET-ID", 3), ("FLAG", True)]
    )
    data = HeaderTemplate(header).render(
        {"CRPIX1": -1234.56789012345, "DET-ID": 103, "OBJECT": "O'Neil"}
    )
    assert len(data) % 2880 == 0
    back = fits.Header.fromstring(data.decode())
    assert back["NAXIS"] == 0 and back["SIMPLE"] is True
    assert back["CRPIX1"] == -1234.56789012345 and back["DET-ID"] == 103
    assert back["OBJECT"] == "O'Neil" and back["FLAG"] is True
    assert back.comments["OBJECT"] == "target"
    for value in (1e-20, 12345678901234.5, -0.0, 7):
        card = fits.Card.fromstring(format_card("X", value))
        assert card.value == value


def test_mask_file_round_trip_and_bad_line(tmp_path: Path) -> None:
    circles = [MaskCircle(150.1234567, -2.5, 36.0, 17, 16.8)]
    path = write_mask_file(tmp_path / "m.reg", circles, tract=9813, patch=40, catalog="x")
    assert read_mask_file(path) == circles
    path.write_text('wcs; fk5\ncircle(1,2,3")\nbox(1,2,3,4)\n')
    with pytest.raises(ConfigError, match=r"m.reg:3"):
        read_mask_file(path)


def test_dither_pattern_and_epochs() -> None:
    east, north = dither_offsets(10, 0.3, 0.0)
    radius = np.hypot(east, north)
    assert radius.max() <= 0.3 and len(set(np.round(radius, 6))) == 10
    edges = ["2016-01-01", "2016-03-20", "2016-07-01"]
    assert calib_epoch_index(edges, 57452.3) == 0  # 2016-03-05
    assert calib_epoch_index(edges, 57482.3) == 1  # 2016-04-04
    with pytest.raises(ConfigError, match="outside every calibration epoch"):
        calib_epoch_index(edges, 58000.0)


def test_presets_validate(tmp_path: Path) -> None:
    assert load_preset("tiny").kind == "pixels"
    assert load_preset("rc2").bands == ["g", "r", "i", "z", "y"]
    with pytest.raises(ConfigError, match="unknown simulation preset"):
        load_preset("huge")
    bad = tmp_path / "p.yaml"
    bad.write_text("name: x\nkind: pixels\ntracts: []\nstart_date: '2016-01-01'\n")
    with pytest.raises(ConfigError, match="p.yaml"):
        load_preset(bad)


def test_cli_simulate_and_bad_input(tmp_path: Path) -> None:
    from rc2_platform.cli import main as group

    runner = CliRunner()
    out = tmp_path / "s"
    result = runner.invoke(
        group,
        [
            "simulate",
            "rc2",
            str(out),
            "--scale",
            "0.02",
            "--max-detectors",
            "2",
            "--tracts",
            "9615",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "bootstrap.yaml").exists()
    assert '"raws"' in result.output
    again = runner.invoke(group, ["simulate", "rc2", str(out), "--scale", "0.02"])
    assert again.exit_code == 1 and "not empty" in again.output
    bad = runner.invoke(group, ["simulate", "rc2", str(tmp_path / "t"), "--tracts", "96x5"])
    assert bad.exit_code == 1 and "96x5" in bad.output and len(bad.output.strip().splitlines()) == 1
    unknown = runner.invoke(group, ["simulate", "rc2", str(tmp_path / "u"), "--tracts", "1"])
    assert unknown.exit_code == 1 and "not in preset" in unknown.output
