"""Every formatter writes a real file that reads back (FITS re-read by astropy itself)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from rc2_platform.datastore import Exposure, FileDatastore, get_formatter
from rc2_platform.errors import FormatterError
from rc2_platform_tests.datastore.helpers import make_ref


def small_wcs() -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.1, 2.2]
    wcs.wcs.crpix = [5.0, 4.0]
    wcs.wcs.cd = [[-4.7e-5, 0.0], [0.0, 4.7e-5]]
    return wcs


def test_exposure_round_trip_keeps_planes_header_and_wcs(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(size=(8, 10)).astype(np.float32)
    exp = Exposure(
        image,
        mask=(image > 1).astype(np.int32),
        variance=np.full_like(image, 0.25),
        header={"FILTER": "HSC-G", "EXPTIME": 30.0},
        wcs=small_wcs(),
    )
    store = FileDatastore(tmp_path / "repo")
    ref = make_ref()
    record = store.put(exp, ref)
    back = store.get(ref, record)
    assert isinstance(back, Exposure)
    np.testing.assert_array_equal(back.image, image)
    np.testing.assert_array_equal(back.mask, exp.mask)
    np.testing.assert_array_equal(back.variance, exp.variance)
    assert back.header["FILTER"] == "HSC-G" and back.header["EXPTIME"] == 30.0
    assert back.wcs is not None
    ra, dec = back.wcs.pixel_to_world_values(4.0, 3.0)
    assert ra == pytest.approx(150.1) and dec == pytest.approx(2.2)
    # astropy on its own sees the documented HDU layout.
    with fits.open(store.root / record.path) as hdus:
        assert [h.name for h in hdus] == ["PRIMARY", "IMAGE", "MASK", "VARIANCE"]
        assert hdus["IMAGE"].header["CTYPE1"] == "RA---TAN"


def test_single_hdu_fits_reads_as_exposure_without_planes(tmp_path: Path) -> None:
    path = tmp_path / "raw.fits"
    fits.PrimaryHDU(np.arange(12, dtype=np.int16).reshape(3, 4)).writeto(path)
    exp = get_formatter("fits_exposure").read(path)
    assert exp.shape == (3, 4) and exp.mask is None and exp.variance is None and exp.wcs is None


def test_image_round_trip(tmp_path: Path) -> None:
    store = FileDatastore(tmp_path)
    ref = make_ref("bias_image", "Image")
    arr = np.arange(20, dtype=np.float64).reshape(4, 5)
    store.put(arr, ref)
    np.testing.assert_array_equal(store.get(ref), arr)
    np.testing.assert_array_equal(fits.getdata(store.path_for(ref)), arr)


def test_table_round_trip_keeps_units(tmp_path: Path) -> None:
    store = FileDatastore(tmp_path)
    ref = make_ref("src", "SourceCatalog")
    table = Table(
        {
            "id": np.array([1, 2, 3], dtype=np.int64),
            "ra": np.array([150.0, 150.1, 150.2]) * u.deg,
            "flux": np.array([1.5, 2.5, 3.5]) * u.nJy,
            "flag": np.array([True, False, True]),
        }
    )
    record = store.put(table, ref)
    assert record.path.endswith(".fits") and record.file_size > 0
    back = store.get(ref)
    assert back["ra"].unit == u.deg and back["flux"].unit == u.nJy
    np.testing.assert_array_equal(back["id"], table["id"])
    assert list(back["flag"]) == [True, False, True]
    assert Table.read(store.path_for(ref), hdu=1)["flux"].unit == u.nJy


@pytest.mark.parametrize(
    ("storage_class", "extension"),
    [
        ("StructuredDataDict", ".yaml"),
        ("Config", ".yaml"),
        ("Packages", ".yaml"),
        ("Json", ".json"),
    ],
)
def test_plain_data_round_trip(tmp_path: Path, storage_class: str, extension: str) -> None:
    store = FileDatastore(tmp_path)
    ref = make_ref("meta", storage_class)
    data: dict[str, Any] = {"nested": {"a": [1, 2.5, "x"]}, "flag": True, "none": None}
    record = store.put(data, ref)
    assert record.path.endswith(extension) and record.formatter in ("yaml", "json")
    assert store.get(ref, record) == data


class _SkyMapLike:
    def __init__(self, n: int):
        self.n = n

    def to_dict(self) -> dict[str, int]:
        return {"n": self.n}


def test_object_written_as_its_dict_and_foreign_types_are_not_rebuilt(tmp_path: Path) -> None:
    store = FileDatastore(tmp_path)
    ref = make_ref("skyMap", "SkyMap", skymap="rings")
    record = store.put(_SkyMapLike(7), ref)
    text = (store.root / record.path).read_text()
    assert "n: 7" in text and "_SkyMapLike" in text and "!!python" not in text
    with pytest.raises(FormatterError, match="only rc2_platform classes"):
        store.get(ref, record)


def test_wrong_object_type_is_a_formatter_error_and_leaves_no_file(tmp_path: Path) -> None:
    store = FileDatastore(tmp_path)
    ref = make_ref()
    with pytest.raises(FormatterError, match="Exposure"):
        store.put("not an exposure", ref)
    assert not store.exists(ref)
    assert [p for p in store.root.rglob("*") if p.is_file()] == []


def test_unknown_storage_class_names_it(tmp_path: Path) -> None:
    store = FileDatastore(tmp_path)
    with pytest.raises(FormatterError, match="'Mystery'"):
        store.put({}, make_ref("x", "Mystery"))
