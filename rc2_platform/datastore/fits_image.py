"""Fast reading and writing of images and exposures (IMAGE/MASK/VARIANCE, TAN WCS); see
:mod:`.fits_io`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rc2_platform.core.exposure import Exposure
from rc2_platform.datastore.fits_cards import (
    BLOCK,
    KEYWORD,
    format_card,
    header_bytes,
    pad,
    parse_cards,
    parse_header,
    simple_value,
    truncated,
)

if TYPE_CHECKING:
    from astropy.wcs import WCS

__all__ = ["read_exposure", "write_exposure"]

#: The keywords that locate and describe an image HDU's data.
_DATA_KEYS = frozenset(
    {"BITPIX", "NAXIS", "BZERO", "BSCALE", "EXTNAME", "PCOUNT", "GCOUNT", "XTENSION", "CTYPE1"}
    | {f"NAXIS{i}" for i in range(1, 1000)}
)

_IMAGE_STRUCTURE = frozenset(
    {"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "PCOUNT", "GCOUNT"}
)
_BITPIX = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


#: Keywords of a TAN WCS as ``WCS.to_header()`` writes it (read without wcslib's parser);
#: the first group must be present, the others take their FITS defaults when absent.
_WCS_REQUIRED = frozenset({"CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2"})
_WCS_OPTIONAL = frozenset(
    {"WCSAXES", "PC1_1", "PC1_2", "PC2_1", "PC2_2", "CDELT1", "CDELT2", "CUNIT1", "CUNIT2",
     "LONPOLE", "LATPOLE", "MJDREF", "RADESYS"}
)  # fmt: skip


def _card_images(header: Any) -> list[str] | None:
    """The card images of a header (astropy ``Header`` or a mapping), structure cards left out.

    A mapping is taken when every key is a FITS keyword (any case, once) and every value
    one this module writes exactly as astropy does; else None (astropy writes it).
    """
    from astropy.io import fits

    skip = _IMAGE_STRUCTURE | {"EXTNAME", "BZERO", "BSCALE"}
    if header is None:
        return []
    if isinstance(header, fits.Header):
        return [str(card.image) for card in header.cards if card.keyword not in skip]
    if not isinstance(header, Mapping):
        return None
    keys = [str(k).upper() for k in header]
    if len(set(keys)) != len(keys) or not all(map(KEYWORD.match, keys)):
        return None
    if not all(map(simple_value, header.values())):
        return None
    return [format_card(k, v) for k, v in zip(keys, header.values(), strict=True) if k not in skip]


def _image_cards(
    header: Sequence[str], shape: tuple[int, ...], bitpix: int, first: bool, name: str = ""
) -> list[str]:
    if first:
        cards = [format_card("SIMPLE", True, "conforms to FITS standard")]
    else:
        cards = [format_card("XTENSION", "IMAGE", "Image extension")]
    cards += [
        format_card("BITPIX", bitpix, "array data type"),
        format_card("NAXIS", len(shape), "number of array dimensions"),
    ]
    cards += [format_card(f"NAXIS{i + 1}", n) for i, n in enumerate(reversed(shape))]
    if first:
        cards.append(format_card("EXTEND", True))
    else:
        cards += [
            format_card("PCOUNT", 0, "number of parameters"),
            format_card("GCOUNT", 1, "number of groups"),
        ]
    cards += header
    if name:
        cards.append(format_card("EXTNAME", name, "extension name"))
    return cards


def _image_plane(data: np.ndarray | None) -> tuple[int, bytes] | None:
    if data is None:
        return None
    arr = np.asarray(data)
    key = {"f4": -32, "f8": -64, "i4": 32, "i2": 16, "i8": 64}.get(arr.dtype.str[1:])
    if key is None or arr.ndim != 2:
        return None
    return key, pad(arr.astype(_BITPIX[key]).tobytes(), b"\0")


def write_exposure(exposure: Exposure, path: Path) -> bool:
    """Write an :class:`Exposure` as the exposure formatter does (primary header, then
    IMAGE with the WCS, MASK, VARIANCE); False (nothing written) for what astropy must do.
    """
    header = _card_images(exposure.header)
    if header is None:
        return False
    planes = [("IMAGE", exposure.image), ("MASK", exposure.mask), ("VARIANCE", exposure.variance)]
    encoded = []
    for name, data in planes:
        plane = _image_plane(data)
        if plane is None and data is not None:
            return False
        if plane is not None and data is not None:
            encoded.append((name, tuple(np.asarray(data).shape), plane))
    parts = [header_bytes(_image_cards(header, (), 8, first=True))]
    wcs_header = _card_images(exposure.wcs.to_header()) if exposure.wcs is not None else []
    assert wcs_header is not None  # an astropy Header always has card images
    for name, shape, (bitpix, body) in encoded:
        extra = wcs_header if name == "IMAGE" else []
        parts += [header_bytes(_image_cards(extra, shape, bitpix, False, name)), body]
    path.write_bytes(b"".join(parts))
    return True


def read_exposure(path: Path) -> Exposure | None:
    """Read an exposure or a plain image file like the exposure formatter's astropy path.

    Returns None for files left to astropy (scaled data other than astropy's ``uint16``
    convention, groups, tables, unusual headers).

    Raises
    ------
    TruncatedFileError
        If the file is shorter than its headers announce (a truncated copy), naming the
        byte counts.
    """
    from astropy.io import fits

    buf = memoryview(path.read_bytes())
    hdus: list[tuple[int, int, dict[str, Any], tuple[int, ...]]] = []
    offset = 0
    while offset < len(buf):
        cards, _, data_start = parse_header(buf, offset, _DATA_KEYS)
        head = dict(cards)
        naxes = [int(head.get(f"NAXIS{i}", 0)) for i in range(1, int(head.get("NAXIS", 0)) + 1)]
        size = (
            abs(int(head["BITPIX"]))
            // 8
            * int(head.get("GCOUNT", 1))
            * (int(head.get("PCOUNT", 0)) + (math.prod(naxes) if naxes else 0))
        )
        if data_start + size > len(buf):
            name = head.get("EXTNAME", "PRIMARY" if not hdus else f"#{len(hdus)}")
            raise truncated(len(buf), str(name), data_start + size)
        hdus.append((offset, data_start, head, tuple(reversed(naxes))))
        offset = data_start + -(-size // BLOCK) * BLOCK
    names = [str(h[2].get("EXTNAME", "PRIMARY")) for h in hdus]
    primary_header = fits.Header.fromstring(bytes(buf[: hdus[0][1]]))
    if "IMAGE" in names:
        image = _plane(buf, hdus[names.index("IMAGE")])
        mask = _plane(buf, hdus[names.index("MASK")]) if "MASK" in names else None
        var = _plane(buf, hdus[names.index("VARIANCE")]) if "VARIANCE" in names else None
        if (
            image is None
            or (mask is None and "MASK" in names)
            or (var is None and "VARIANCE" in names)
        ):
            return None
        start, data_start, image_head, _ = hdus[names.index("IMAGE")]
        # Like the astropy path: a WCS only when the IMAGE header has one.
        wcs = _wcs(bytes(buf[start:data_start])) if "CTYPE1" in image_head else None
        return Exposure(image, mask, var, primary_header, wcs)
    if len(hdus) != 1:
        return None
    if not hdus[0][3]:
        return Exposure(np.zeros((0, 0), dtype=np.float32), header=primary_header)
    image = _plane(buf, hdus[0])
    if image is None:
        return None
    wcs = _wcs(bytes(buf[: hdus[0][1]])) if "CTYPE1" in hdus[0][2] else None
    return Exposure(image, None, None, primary_header, wcs)


def _plane(buf: memoryview, hdu: tuple[int, int, dict[str, Any], tuple[int, ...]]) -> Any:
    _, start, head, shape = hdu
    bitpix = int(head["BITPIX"])
    if len(shape) != 2 or bitpix not in _BITPIX:
        return None
    bzero, bscale = head.get("BZERO", 0), head.get("BSCALE", 1)
    size = abs(bitpix) // 8 * shape[0] * shape[1]
    raw = np.frombuffer(buf[start : start + size], dtype=_BITPIX[bitpix]).reshape(shape)
    if bitpix == 16 and bzero == 32768 and bscale == 1:
        return (raw.view(">u2") ^ np.uint16(0x8000)).astype(np.uint16)
    if bzero != 0 or bscale != 1:
        return None
    return raw.copy()


def _wcs(header_bytes: bytes) -> WCS:
    """The WCS of a header: built directly for a plain TAN header, else by astropy."""
    from astropy.io import fits
    from astropy.wcs import WCS

    cards, complete, _ = parse_cards(header_bytes, 0)
    keys = {k: v for k, v in cards if k not in _IMAGE_STRUCTURE and k != "EXTNAME"}
    plain = (
        complete
        and _WCS_REQUIRED <= set(keys) <= _WCS_REQUIRED | _WCS_OPTIONAL
        and (keys["CTYPE1"], keys["CTYPE2"]) == ("RA---TAN", "DEC--TAN")
        and keys.get("WCSAXES", 2) == 2
    )
    if not plain:
        return WCS(fits.Header.fromstring(header_bytes))
    wcs = WCS(naxis=2)
    w = wcs.wcs
    w.ctype = [keys["CTYPE1"], keys["CTYPE2"]]
    w.crval = [keys["CRVAL1"], keys["CRVAL2"]]
    w.crpix = [keys["CRPIX1"], keys["CRPIX2"]]
    w.pc = [
        [keys.get("PC1_1", 1.0), keys.get("PC1_2", 0.0)],
        [keys.get("PC2_1", 0.0), keys.get("PC2_2", 1.0)],
    ]
    w.cdelt = [keys.get("CDELT1", 1.0), keys.get("CDELT2", 1.0)]
    w.cunit = [keys.get("CUNIT1", "deg"), keys.get("CUNIT2", "deg")]
    if "LONPOLE" in keys:
        w.lonpole = keys["LONPOLE"]
    if "LATPOLE" in keys:
        w.latpole = keys["LATPOLE"]
    if "MJDREF" in keys:
        w.mjdref = [keys["MJDREF"], 0.0]
    if "RADESYS" in keys:
        w.radesys = keys["RADESYS"]
    w.set()
    return wcs
