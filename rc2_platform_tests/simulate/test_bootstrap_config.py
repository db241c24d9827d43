"""bootstrap.yaml: validation errors name the field; paths are relative to the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rc2_platform.errors import ConfigError
from rc2_platform.ingest.bootstrap_config import (
    BootstrapConfig,
    load_bootstrap_config,
    write_bootstrap_config,
)

GOOD = {
    "version": 1,
    "instrument": "HSC",
    "skymap": {"name": "hsc_rings_v1_tiny", "config": "hsc_rings_v1_tiny"},
    "tracts": [9813],
    "bands": ["g", "i"],
    "raws": {"paths": ["raw"], "transfer": "symlink"},
    "calibrations": [
        {
            "dataset_type": "bias",
            "detector": 8,
            "file": "calib/bias-008.fits",
            "valid_begin": "2016-01-01T00:00:00",
            "valid_end": "2016-06-01T00:00:00",
        },
        {"dataset_type": "flat", "detector": 8, "physical_filter": "HSC-I", "file": "calib/f.fits"},
    ],
    "refcat": {"name": "synth_refcat", "shards": [{"htm7": 231858, "file": "refcat/231858.fits"}]},
    "masks": [{"tract": 9813, "patch": 40, "file": "masks/9813/40.reg"}],
}


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "bootstrap.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _touch_all(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    for rel in ("calib/bias-008.fits", "calib/f.fits", "refcat/231858.fits", "masks/9813/40.reg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")


def test_good_config_resolves_paths_relative_to_the_file(tmp_path: Path) -> None:
    _touch_all(tmp_path)
    config = load_bootstrap_config(_write(tmp_path, GOOD), check_files=True)
    assert config.raws.paths == [tmp_path / "raw"]
    assert config.calibrations[1].file == tmp_path / "calib" / "f.fits"
    assert config.collections.defaults == "HSC/defaults"
    assert config.collections.raw == "HSC/raw/all"
    # Writing back gives relative paths and the same content.
    out = write_bootstrap_config(config, tmp_path / "copy.yaml")
    assert str(tmp_path) not in out.read_text()
    assert load_bootstrap_config(out) == config


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["calibrations"][0].update(detector="abc"), "calibrations.0.detector"),
        (lambda d: d["calibrations"][1].pop("physical_filter"), "calibrations.1"),
        (lambda d: d["calibrations"][0].update(valid_end="yesterday"), "calibrations.0.valid_end"),
        (lambda d: d["calibrations"][0].update(valid_end="2015-01-01T00:00:00"), "calibrations.0"),
        (lambda d: d["skymap"].update(config="no_such_map"), "skymap.config"),
        (lambda d: d["raws"].update(transfer="teleport"), "raws.transfer"),
        (lambda d: d.update(version=7), "version"),
        (lambda d: d.update(colour="blue"), "colour"),
        (lambda d: d.pop("tracts"), "tracts"),
        (lambda d: d["masks"][0].update(patch=-1), "masks.0.patch"),
    ],
)
def test_bad_config_raises_config_error_naming_the_field(
    tmp_path: Path, mutate, field: str
) -> None:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    mutate(data)
    with pytest.raises(ConfigError) as info:
        load_bootstrap_config(_write(tmp_path, data))
    message = str(info.value)
    assert f"{field}:" in message or f"{field}." in message
    assert "bootstrap.yaml" in message


def test_missing_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"do not exist.*raw"):
        load_bootstrap_config(_write(tmp_path, GOOD), check_files=True)


def test_not_yaml_or_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "bootstrap.yaml"
    path.write_text("tracts: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_bootstrap_config(path)
    path.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_bootstrap_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_bootstrap_config(tmp_path / "nope.yaml")


def test_raw_spec_lists_files_in_directories(tmp_path: Path) -> None:
    _touch_all(tmp_path)
    (tmp_path / "raw" / "a").mkdir()
    (tmp_path / "raw" / "a" / "x.fits").write_text("x")
    (tmp_path / "raw" / "notes.txt").write_text("x")
    config = load_bootstrap_config(_write(tmp_path, GOOD))
    assert list(config.raws.iter_files()) == [tmp_path / "raw" / "a" / "x.fits"]
    assert isinstance(config, BootstrapConfig)
