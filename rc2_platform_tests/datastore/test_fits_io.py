"""The fast FITS paths read and write what astropy's readers and writers do."""

from __future__ import annotations

import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import MaskedColumn, Table
from astropy.wcs import WCS

from rc2_platform.core.exposure import Exposure
from rc2_platform.datastore import fits_io
from rc2_platform.datastore.formatters import FitsExposureFormatter, FitsTableFormatter
from rc2_platform.errors import TruncatedFileError


def _catalog() -> Table:
    rng = np.random.default_rng(3)
    table = Table()
    table["id"] = np.arange(5, dtype=np.int64)
    table["x"] = rng.normal(size=5) * u.pix
    table["flux"] = np.array([1.0, np.nan, 3.0, 4.0, 5.0]) * u.nJy
    table["mag"] = rng.normal(20, 1, 5) * u.mag
    table["ixx"] = rng.normal(size=5).astype(np.float32) * u.pix**2
    table["counts"] = rng.normal(size=5) * u.ct
    table["n"] = np.arange(5, dtype=np.int32)
    table["small"] = np.arange(5, dtype=np.int16)
    table["byte"] = np.arange(5, dtype=np.uint8)
    table["flag"] = np.array([True, False, True, False, False])
    table["band"] = np.array(["g", "r", "", "z", "y"])
    table.meta.update({"BAND": "i", "PSF_FWHM": 2.560310208801566, "N_PSF": 29, "OK": True})
    table.meta["ZP"] = -8.274925627520101e-05
    return table


def _same_table(a: Table, b: Table) -> None:
    assert a.colnames == b.colnames and a.meta == b.meta
    for name in a.colnames:
        x, y = a[name], b[name]
        assert type(x) is type(y), name
        if x.dtype.kind == "O":
            assert y.dtype.kind == "O" and len(x) == len(y), name
            for p, q in zip(x, y, strict=True):
                assert p.dtype == q.dtype and np.array_equal(p, q), name
            continue
        assert x.dtype == y.dtype and x.unit == y.unit, name
        assert np.array_equal(np.asarray(x), np.asarray(y), equal_nan=x.dtype.kind == "f"), name
        if isinstance(x, MaskedColumn):
            assert np.array_equal(x.mask, y.mask), name


def test_table_round_trip_matches_astropy(tmp_path: Path) -> None:
    table = _catalog()
    fast, slow = tmp_path / "fast.fits", tmp_path / "slow.fits"
    assert fits_io.write_table(table, fast)
    table.write(slow, format="fits")
    with fits.open(fast) as hdus:
        hdus.verify("exception")
    reference = Table.read(slow, format="fits", hdu=1)
    read_back = fits_io.read_table(fast)
    assert read_back is not None
    _same_table(read_back, reference)
    _same_table(Table.read(fast, format="fits", hdu=1), reference)
    # What astropy read (masked NaN and empty-string columns) is written again the same.
    again = tmp_path / "again.fits"
    assert fits_io.write_table(reference, again)
    _same_table(Table.read(again, format="fits", hdu=1), reference)
    assert isinstance(reference["flux"], MaskedColumn) and isinstance(
        reference["band"], MaskedColumn
    )


def test_empty_table_round_trip(tmp_path: Path) -> None:
    table = _catalog()[:0]
    path = tmp_path / "empty.fits"
    assert fits_io.write_table(table, path)
    read_back = fits_io.read_table(path)
    assert read_back is not None and len(read_back) == 0
    assert read_back.colnames == table.colnames


def test_variable_length_columns_round_trip(tmp_path: Path) -> None:
    table = _catalog()
    spans = np.empty(5, dtype=object)
    values = np.empty(5, dtype=object)
    for k in range(5):
        spans[k] = np.arange(k * 3, dtype=np.int32)
        values[k] = np.linspace(0, 1, k, dtype=np.float32)
    table["span_y"], table["fp_value"] = spans, values
    fast, slow = tmp_path / "fast.fits", tmp_path / "slow.fits"
    assert fits_io.write_table(table, fast)
    table.write(slow, format="fits")
    reference = Table.read(slow, format="fits", hdu=1)
    for read_back in (fits_io.read_table(fast), fits_io.read_table(slow)):
        assert read_back is not None
        _same_table(read_back, reference)
    _same_table(Table.read(fast, format="fits", hdu=1), reference)


@pytest.mark.parametrize(
    "change",
    ["byte arrays column", "2-d column", "long meta key", "list meta", "nan meta", "format"],
)
def test_unusual_tables_are_left_to_astropy(tmp_path: Path, change: str) -> None:
    table = _catalog()
    if change == "byte arrays column":
        col = np.empty(5, dtype=object)
        for k in range(5):
            col[k] = np.arange(k, dtype=np.uint8)
        table["spans"] = col
    elif change == "2-d column":
        table["pair"] = np.zeros((5, 2))
    elif change == "long meta key":
        table.meta["A_LONG_KEYWORD"] = 1
    elif change == "list meta":
        table.meta["comments"] = ["one", "two"]
    elif change == "nan meta":
        table.meta["BAD"] = float("nan")
    else:
        table["x"].format = ".3f"
    path = tmp_path / "t.fits"
    assert not fits_io.write_table(table, path) and not path.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        FitsTableFormatter().write(table, path)  # astropy writes it
        if change in ("byte arrays column", "list meta", "format"):
            assert fits_io.read_table(path) is None  # and reads it
            assert len(FitsTableFormatter().read(path)) == 5


def _tan_wcs() -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [216.3, 0.74]
    wcs.wcs.crpix = [-594.25, 264.625]
    wcs.wcs.cd = [[-7.4228e-4, -8.27e-5], [-8.21e-5, 7.419e-4]]
    return wcs


def _exposure() -> Exposure:
    rng = np.random.default_rng(1)
    header = fits.Header()
    header["BAND"] = "g"
    header["PSF_FWHM"] = (2.5, "PSF FWHM (pixels)")
    header["LONGSTR"] = "x" * 90  # a CONTINUE card
    header["COMMENT"] = "a comment"
    image = rng.normal(size=(20, 12)).astype(np.float32)
    mask = rng.integers(0, 8, size=(20, 12)).astype(np.int32)
    return Exposure(image, mask, np.abs(image) + 1, header, _tan_wcs())


def _same_exposure(a: Exposure, b: Exposure) -> None:
    for plane in ("image", "mask", "variance"):
        x, y = getattr(a, plane), getattr(b, plane)
        assert x.dtype == y.dtype and np.array_equal(x, y), plane
    assert list(a.header.items()) == list(b.header.items())
    assert (a.wcs is None) == (b.wcs is None)
    if a.wcs is not None:
        assert repr(a.wcs.to_header()) == repr(b.wcs.to_header())
        x, y = np.linspace(-5, 30, 9), np.linspace(0, 40, 9)
        assert np.array_equal(a.wcs.pixel_to_world_values(x, y), b.wcs.pixel_to_world_values(x, y))


def test_exposure_round_trip_matches_astropy(tmp_path: Path) -> None:
    exposure = _exposure()
    fast, slow = tmp_path / "fast.fits", tmp_path / "slow.fits"
    assert fits_io.write_exposure(exposure, fast)
    fits.HDUList(
        [
            fits.PrimaryHDU(header=exposure.header.copy()),
            fits.ImageHDU(exposure.image, header=exposure.wcs.to_header(), name="IMAGE"),
            fits.ImageHDU(exposure.mask, name="MASK"),
            fits.ImageHDU(exposure.variance, name="VARIANCE"),
        ]
    ).writeto(slow)
    with fits.open(fast) as hdus:
        hdus.verify("exception")
    formatter = FitsExposureFormatter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # astropy's reader on both files, and the fast reader, give the same exposure
        _same_exposure(_astropy_read(fast), _astropy_read(slow))
        read_back = fits_io.read_exposure(fast)
        assert read_back is not None
        _same_exposure(read_back, _astropy_read(slow))
        _same_exposure(formatter.read(fast), read_back)


def _astropy_read(path: Path) -> Exposure:
    with fits.open(path, memmap=False) as hdus:
        wcs = WCS(hdus["IMAGE"].header)
        return Exposure(
            np.array(hdus["IMAGE"].data),
            np.array(hdus["MASK"].data),
            np.array(hdus["VARIANCE"].data),
            hdus[0].header.copy(),
            wcs,
        )


def test_exposure_with_a_mapping_header_and_no_wcs_is_written_as_astropy_writes_it(
    tmp_path: Path,
) -> None:
    header = {"standin": True, "NQUANTA": 12, "LABEL": "isr", "SCALE": 0.25}
    exposure = Exposure(np.arange(16, dtype=np.float32).reshape(4, 4), header=header)
    fast, slow = tmp_path / "fast.fits", tmp_path / "slow.fits"
    assert fits_io.write_exposure(exposure, fast)
    primary = fits.PrimaryHDU(header=fits.Header(list(header.items())))
    fits.HDUList([primary, fits.ImageHDU(exposure.image, name="IMAGE")]).writeto(slow)
    assert fast.read_bytes() == slow.read_bytes()
    formatter = FitsExposureFormatter()
    for path in (fast, slow):
        read_back = formatter.read(path)
        assert read_back.wcs is None  # as the astropy path: no CTYPE1, no WCS
        assert read_back.header["STANDIN"] is True and read_back.header["SCALE"] == 0.25
        np.testing.assert_array_equal(read_back.image, exposure.image)
    # A header astropy must write (a long keyword: HIERARCH) is left to astropy.
    assert not fits_io.write_exposure(
        Exposure(exposure.image, header={"A_VERY_LONG_KEY": 1}), tmp_path / "x.fits"
    )


def test_single_images_read_like_astropy(tmp_path: Path) -> None:
    raw = np.arange(0, 60000, 250, dtype=np.uint16).reshape(16, 15)
    header = _tan_wcs().to_header()
    header["BUNIT"] = "ADU"
    fits.PrimaryHDU(raw, header=header).writeto(tmp_path / "raw.fits")
    fits.PrimaryHDU(raw.astype(np.float32)).writeto(tmp_path / "flat.fits")
    fits.PrimaryHDU(header=fits.Header([("OBSTYPE", "bias")])).writeto(tmp_path / "empty.fits")
    for name in ("raw", "flat"):
        path = tmp_path / f"{name}.fits"
        fast = fits_io.read_exposure(path)
        assert fast is not None
        with fits.open(path) as hdus:
            data, hdr = np.array(hdus[0].data), hdus[0].header.copy()
        assert fast.image.dtype == data.dtype and np.array_equal(fast.image, data)
        assert list(fast.header.items()) == list(hdr.items())
        assert (fast.wcs is not None) == (name == "raw")
    empty = fits_io.read_exposure(tmp_path / "empty.fits")
    assert empty is not None and empty.image.shape == (0, 0) and empty.header["OBSTYPE"] == "bias"


def test_a_truncated_image_is_named_as_truncated(tmp_path: Path) -> None:
    """A raw cut short after ingest fails its read with the byte counts, not a numpy error."""
    image = np.arange(0, 60000, 250, dtype=np.uint16).reshape(16, 15)
    path = tmp_path / "raw.fits"
    fits.PrimaryHDU(image).writeto(path)
    whole = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(2880 + 100)  # the header and 100 of the 480 data bytes
    with pytest.raises(
        TruncatedFileError, match=r"truncated: 2980 bytes, but its HDU PRIMARY ends at byte 3360"
    ):
        fits_io.read_exposure(path)
    # The formatter passes it on; the datastore's get() wraps it with the path and the ref.
    with pytest.raises(TruncatedFileError, match="the file is truncated"):
        FitsExposureFormatter().read(path)
    assert whole == 5760


def test_a_header_cut_short_is_named_as_truncated(tmp_path: Path) -> None:
    """A FITS file cut inside a header (no END card) is truncated too; garbage is not."""
    path = tmp_path / "exposure.fits"
    FitsExposureFormatter().write(Exposure(np.ones((8, 8), dtype=np.float32)), path)
    path.write_bytes(path.read_bytes()[: 2880 + 400])  # before the IMAGE header's END card
    with pytest.raises(TruncatedFileError, match="header starting at byte 2880 has no END"):
        fits_io.read_exposure(path)
    garbage = tmp_path / "garbage.fits"
    garbage.write_bytes(b"not a FITS file at all" * 10)
    with pytest.raises(ValueError, match="no END card") as caught:
        fits_io.read_exposure(garbage)
    assert not isinstance(caught.value, TruncatedFileError)


def test_a_truncated_table_is_named_as_truncated(tmp_path: Path) -> None:
    """A catalog cut short fails like an image, not with astropy's partial read."""
    table = Table({"id": np.arange(500), "flux": np.linspace(0.0, 1.0, 500)})
    path = tmp_path / "src.fits"
    FitsTableFormatter().write(table, path)
    path.write_bytes(path.read_bytes()[: 2 * 2880 + 1000])
    with pytest.raises(TruncatedFileError, match=r"truncated: 6760 bytes, but its HDU"):
        FitsTableFormatter().read(path)


def test_scaled_images_are_left_to_astropy(tmp_path: Path) -> None:
    hdu = fits.PrimaryHDU(np.arange(12, dtype=np.int16).reshape(3, 4))
    hdu.header["BSCALE"], hdu.header["BZERO"] = 2.0, 10.0
    hdu.writeto(tmp_path / "scaled.fits")
    assert fits_io.read_exposure(tmp_path / "scaled.fits") is None
    exposure = FitsExposureFormatter().read(tmp_path / "scaled.fits")
    assert exposure.image[0, 1] == pytest.approx(12.0)
