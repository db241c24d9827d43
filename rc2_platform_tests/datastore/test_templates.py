"""Path templates: layout, optional fields, and values that try to leave the root."""

from __future__ import annotations

from pathlib import Path

import pytest

from rc2_platform.datastore import FileDatastore, PathTemplate, load_datastore_config
from rc2_platform.errors import ConfigError, DatastoreError, PathTraversalError
from rc2_platform_tests.datastore.helpers import make_ref


def test_packaged_config_validates_and_has_default() -> None:
    config = load_datastore_config()
    assert "default" in config.templates
    assert config.storage_classes["Exposure"].formatter == "fits_exposure"


def test_calexp_template_layout(tmp_path: Path) -> None:
    store = FileDatastore(tmp_path)
    ref = make_ref(instrument="HSC", visit=1228, detector=49, band="g")
    assert store.relative_path_for(ref) == (
        "HSC/runs/RC2/calexp/g/calexp_HSC_1228_49_g_HSC_runs_RC2.fits"
    )
    assert store.path_for(ref) == store.root / store.relative_path_for(ref)


def test_optional_fields_drop_with_their_separators() -> None:
    template = PathTemplate("{run}/{a}/{b:?}/x_{a}_{b:?}_{c:?}-{a}")
    assert template.format({"a": 1}, "r") == "r/1/x_1-1"
    assert template.format({"a": 1, "b": "q", "c": 3}, "r") == "r/1/q/x_1_q_3-1"


def test_default_template_covers_coadd_data_ids(tmp_path: Path) -> None:
    store = FileDatastore(tmp_path)
    ref = make_ref(
        "deepCoadd_meas",
        "SourceCatalog",
        run="run1",
        skymap="rings",
        tract=9615,
        patch=40,
        band="i",
    )
    assert store.relative_path_for(ref) == (
        "run1/deepCoadd_meas/i/deepCoadd_meas_rings_9615_40_i_run1.fits"
    )


def test_missing_required_field_and_unused_dimension_are_errors() -> None:
    template = PathTemplate("{run}/{dataset_type}_{visit}", "calexp")
    with pytest.raises(DatastoreError, match="needs 'visit'"):
        template.format({"dataset_type": "calexp"}, "r")
    with pytest.raises(DatastoreError, match=r"does not use data ID dimension\(s\) \['detector'\]"):
        template.format({"dataset_type": "calexp", "visit": 1, "detector": 2}, "r")


@pytest.mark.parametrize(
    "value", ["../../etc", "..", "a/b", "a\\b", "x\x00y", "~root", "", "line\nbreak"]
)
def test_traversal_in_data_id_value_is_rejected(tmp_path: Path, value: str) -> None:
    store = FileDatastore(tmp_path / "root")
    ref = make_ref(instrument="HSC", visit=value, detector=1)
    with pytest.raises(PathTraversalError) as info:
        store.put({"a": 1}, make_ref("meta", "Json", instrument="HSC", visit=value, detector=1))
    with pytest.raises(PathTraversalError) as info:
        store.path_for(ref)
    assert repr(value) in str(info.value)
    assert not any(tmp_path.rglob("*.json"))


@pytest.mark.parametrize(
    "run", ["/abs", "/etc/passwd", "a/../../b", "..", "a//b", "r\x00", "a/./b"]
)
def test_traversal_in_run_is_rejected(tmp_path: Path, run: str) -> None:
    store = FileDatastore(tmp_path / "root")
    with pytest.raises(PathTraversalError, match="run"):
        store.put({"a": 1}, make_ref("meta", "Json", run=run))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_symlinked_directory_escaping_root_is_caught(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store = FileDatastore(tmp_path / "root")
    (store.root / "evil").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PathTraversalError, match="outside the datastore root"):
        store.put({"a": 1}, make_ref("meta", "Json", run="evil"))
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(
    "text", ["/abs/{run}", "{run}/../{visit}", "{run}/{visit:x}", "{run}/{bad-name}", "{run}/"]
)
def test_bad_templates_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        PathTemplate(text, "t")


def test_config_file_with_unknown_formatter_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "sc.yaml"
    bad.write_text("storage_classes:\n  Exposure: {formatter: pickle}\n")
    with pytest.raises(ConfigError, match="unknown formatter 'pickle'"):
        load_datastore_config(storage_classes_file=bad)
