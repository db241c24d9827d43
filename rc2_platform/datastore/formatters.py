"""Formatters: how an in-memory object of a storage class is written to one file.

Pickle is never used. Objects that are not plain data (e.g. a sky map) are written
as YAML/JSON of ``obj.to_dict()`` with their class name, and rebuilt with
``cls.from_dict(data)``, only for classes inside ``rc2_platform``.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import yaml

from rc2_platform.core.exposure import Exposure
from rc2_platform.core.yaml_safe import load_yaml
from rc2_platform.datastore import fits_io
from rc2_platform.errors import FormatterError

if TYPE_CHECKING:
    from astropy.io import fits
    from astropy.table import Table

# astropy is imported where a FITS file is read or written (not at import time), so that
# processes handling only YAML/JSON datasets do not pay its ~0.7 s import. The FITS
# formatters first try the fast paths of fits_io (plain tables and exposures; 5-20x
# faster than astropy's general machinery) and use astropy for everything else.

#: libyaml's C emitter/parser when PyYAML has them (same output, several times faster).
_YamlDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

_TYPE_KEY = "__rc2_type__"
_DATA_KEY = "data"


class Formatter(ABC):
    """Reads and writes one storage class to one file.

    Subclasses set :attr:`name` (used in datastore records and config) and
    :attr:`extension` (including the dot).
    """

    name: ClassVar[str]
    extension: ClassVar[str]

    @abstractmethod
    def read(self, path: Path) -> Any:
        """Read the object stored at ``path``."""

    @abstractmethod
    def write(self, obj: Any, path: Path) -> None:
        """Write ``obj`` to ``path`` (which the caller makes atomic)."""


class FitsExposureFormatter(Formatter):
    """:class:`Exposure` as FITS: primary header, then IMAGE, MASK, VARIANCE HDUs.

    The WCS goes in the IMAGE header. A plain single-HDU FITS image (e.g. a raw
    file) reads back as an Exposure with no mask and variance; a header-only file (no
    data in any HDU, e.g. the metadata-scale presets' raws) reads back as an Exposure with
    an empty (0 x 0) image and the primary header.
    """

    name = "fits_exposure"
    extension = ".fits"

    def write(self, obj: Any, path: Path) -> None:
        from astropy.io import fits

        if isinstance(obj, np.ndarray):
            obj = Exposure(obj)
        if not isinstance(obj, Exposure):
            raise FormatterError(
                f"the {self.name} formatter writes Exposure objects, not {type(obj).__name__}"
            )
        if fits_io.write_exposure(obj, path):
            return
        primary = fits.PrimaryHDU(header=_to_header(obj.header))
        image_header = obj.wcs.to_header() if obj.wcs is not None else fits.Header()
        hdus: list[Any] = [primary, fits.ImageHDU(obj.image, header=image_header, name="IMAGE")]
        if obj.mask is not None:
            hdus.append(fits.ImageHDU(obj.mask, name="MASK"))
        if obj.variance is not None:
            hdus.append(fits.ImageHDU(obj.variance, name="VARIANCE"))
        fits.HDUList(hdus).writeto(path)

    def read(self, path: Path) -> Exposure:
        from astropy.io import fits
        from astropy.wcs import WCS

        fast = fits_io.read_exposure(path)
        if fast is not None:
            return fast
        with fits.open(path, memmap=False) as hdus:
            names = [h.name for h in hdus]
            if "IMAGE" in names:
                image_hdu = hdus["IMAGE"]
                header = hdus[0].header.copy()
            else:
                image_hdu = next((h for h in hdus if h.data is not None), None)
                if image_hdu is None:
                    if len(hdus) == 1 and hdus[0].header.get("NAXIS", 0) == 0:
                        empty = np.zeros((0, 0), dtype=np.float32)
                        return Exposure(empty, header=hdus[0].header.copy())
                    raise FormatterError(f"FITS file {path} holds no image data")
                header = image_hdu.header.copy()
            wcs = WCS(image_hdu.header) if "CTYPE1" in image_hdu.header else None
            mask = np.array(hdus["MASK"].data) if "MASK" in names else None
            variance = np.array(hdus["VARIANCE"].data) if "VARIANCE" in names else None
            return Exposure(np.array(image_hdu.data), mask, variance, header, wcs)


class FitsImageFormatter(Formatter):
    """A bare 2-d numpy array as a single-HDU FITS image."""

    name = "fits_image"
    extension = ".fits"

    def write(self, obj: Any, path: Path) -> None:
        if isinstance(obj, Exposure):
            obj = obj.image
        if not isinstance(obj, np.ndarray):
            raise FormatterError(
                f"the {self.name} formatter writes numpy arrays, not {type(obj).__name__}"
            )
        from astropy.io import fits

        fits.PrimaryHDU(obj).writeto(path)

    def read(self, path: Path) -> np.ndarray:
        from astropy.io import fits

        with fits.open(path, memmap=False) as hdus:
            return np.array(hdus[0].data)


class FitsTableFormatter(Formatter):
    """An astropy Table (or numpy structured array) as a FITS binary table; units kept."""

    name = "fits_table"
    extension = ".fits"

    def write(self, obj: Any, path: Path) -> None:
        from astropy.table import Table

        if isinstance(obj, np.ndarray) and obj.dtype.names:
            obj = Table(obj)
        if not isinstance(obj, Table):
            raise FormatterError(
                f"the {self.name} formatter writes astropy Tables, not {type(obj).__name__}"
            )
        if not fits_io.write_table(obj, path):
            obj.write(path, format="fits")

    def read(self, path: Path) -> Table:
        from astropy.table import Table

        fast = fits_io.read_table(path)
        return fast if fast is not None else Table.read(path, format="fits", hdu=1)


class YamlFormatter(Formatter):
    """Plain data (dicts, lists, numbers, strings) or ``to_dict``-able objects as YAML."""

    name = "yaml"
    extension = ".yaml"

    def write(self, obj: Any, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as stream:
            yaml.dump(_to_plain(obj), stream, Dumper=_YamlDumper, sort_keys=False)

    def read(self, path: Path) -> Any:
        with open(path, encoding="utf-8") as stream:
            return _from_plain(load_yaml(stream, str(path)), path)


class JsonFormatter(Formatter):
    """Plain data or ``to_dict``-able objects as JSON."""

    name = "json"
    extension = ".json"

    def write(self, obj: Any, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as stream:
            json.dump(_to_plain(obj), stream, indent=1)

    def read(self, path: Path) -> Any:
        with open(path, encoding="utf-8") as stream:
            return _from_plain(json.load(stream), path)


class ParquetFormatter(Formatter):
    """A ``pyarrow.Table`` as Apache Parquet (pyarrow is imported where a file is used)."""

    name = "parquet"
    extension = ".parquet"

    def write(self, obj: Any, path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not isinstance(obj, pa.Table):
            raise FormatterError(f"the parquet formatter writes pyarrow Tables, not {type(obj)}")
        pq.write_table(obj, path)

    def read(self, path: Path) -> Any:
        import pyarrow.parquet as pq

        return pq.read_table(path)


#: All formatters by name; storage classes refer to these names.
FORMATTERS: dict[str, type[Formatter]] = {
    f.name: f
    for f in (
        FitsExposureFormatter,
        FitsImageFormatter,
        FitsTableFormatter,
        YamlFormatter,
        JsonFormatter,
        ParquetFormatter,
    )
}


def get_formatter(name: str) -> Formatter:
    """Return a formatter instance by name.

    Raises
    ------
    FormatterError
        If no formatter has that name.
    """
    try:
        return FORMATTERS[name]()
    except KeyError:
        raise FormatterError(
            f"unknown formatter {name!r}; known formatters: {sorted(FORMATTERS)}"
        ) from None


def _to_header(header: Any) -> fits.Header:
    from astropy.io import fits

    if isinstance(header, fits.Header):
        return header.copy()
    out = fits.Header()
    for key, value in dict(header or {}).items():
        out[key] = value
    return out


def _to_plain(obj: Any) -> Any:
    if obj is None or isinstance(obj, (str, int, float, bool, list, dict)):
        return obj
    if isinstance(obj, tuple):
        return list(obj)
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        cls = type(obj)
        return {_TYPE_KEY: f"{cls.__module__}.{cls.__qualname__}", _DATA_KEY: to_dict()}
    raise FormatterError(
        f"cannot write a {type(obj).__name__} as YAML/JSON: give plain data or an object "
        "with to_dict() and a from_dict() classmethod"
    )


def _from_plain(data: Any, path: Path) -> Any:
    if not (isinstance(data, dict) and set(data) == {_TYPE_KEY, _DATA_KEY}):
        return data
    qualified = str(data[_TYPE_KEY])
    module_name, _, class_name = qualified.rpartition(".")
    if not module_name.startswith("rc2_platform.") and module_name != "rc2_platform":
        raise FormatterError(
            f"{path} names type {qualified!r}; only rc2_platform classes are rebuilt from files"
        )
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
        return cls.from_dict(data[_DATA_KEY])
    except (ImportError, AttributeError) as exc:
        raise FormatterError(f"{path}: cannot rebuild {qualified!r}: {exc}") from exc
