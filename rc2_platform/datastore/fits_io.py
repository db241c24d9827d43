"""Fast reading and writing of the FITS files the platform writes (tables, exposures).

astropy's general FITS machinery costs 10-60 ms per small file (header verification,
configuration look-ups per card, column objects); a whole tract writes and reads
~100,000 of them. The functions here handle the plain cases directly — binary tables of
scalar numeric, boolean and string columns with simple meta; images and exposures
(IMAGE/MASK/VARIANCE extensions) with a TAN WCS — and return ``False``/``None`` for
anything else, where the formatter uses astropy. The files are standard FITS that astropy
reads back to the same objects, and what is read equals what astropy's readers give
(column types, units, masks of NaN and empty strings, meta, header cards).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rc2_platform.core.exposure import Exposure

if TYPE_CHECKING:
    from astropy.table import Table
    from astropy.wcs import WCS

__all__ = [
    "format_card",
    "read_exposure",
    "read_table",
    "write_exposure",
    "write_table",
]

_BLOCK = 2880
_KEYWORD = re.compile(r"^[A-Z0-9_-]{1,8}$")
_COLUMN_KEYWORD = re.compile(
    r"^(TTYPE|TFORM|TUNIT|TNULL|TSCAL|TZERO|TDISP|TBCOL|TDIM|TCTYP|TCUNI|TCRPX|TCRVL|TCDLT|"
    r"TRPOS)[0-9]+$"
)
_TABLE_STRUCTURE = frozenset(
    {"XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "TFIELDS", "THEAP"}
)
_IMAGE_STRUCTURE = frozenset(
    {"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "PCOUNT", "GCOUNT"}
)
_TFORM = {"K": ">i8", "J": ">i4", "I": ">i2", "B": "u1", "D": ">f8", "E": ">f4", "L": "S1"}
_DTYPE_TFORM = {"i8": "K", "i4": "J", "i2": "I", "u1": "B", "f8": "D", "f4": "E"}
_BITPIX = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


# --- cards -----------------------------------------------------------------------------


def _format_value(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return ("T" if value else "F").rjust(20)
    if isinstance(value, (int, np.integer)):
        return str(int(value)).rjust(20)
    if isinstance(value, (float, np.floating)):
        # astropy's Card formatting: str(), then the mantissa cut to fit 20 characters.
        text = str(float(value)).replace("e", "E")
        if len(text) > 20:
            exp = text.find("E")
            text = text[:20] if exp < 0 else text[: 20 - (len(text) - exp)] + text[exp:]
        return text.rjust(20)
    if isinstance(value, str):
        quoted = "'" + value.replace("'", "''").ljust(8) + "'"
        return quoted.ljust(20)
    raise TypeError(f"cannot format {value!r} as a FITS value")


def format_card(keyword: str, value: Any, comment: str = "") -> str:
    """An 80-character FITS card image for a short keyword and a simple value.

    Falls back to :class:`astropy.io.fits.Card` for anything that does not fit one card.
    """
    if len(keyword) <= 8 and not (isinstance(value, str) and len(value) > 60):
        text = f"{keyword.upper():<8}= {_format_value(value)}"
        if comment:
            text += f" / {comment}"
        if len(text) <= 80:
            return text.ljust(80)
        if len(f"{keyword.upper():<8}= {_format_value(value)}") <= 80:
            return text[:80]
    from astropy.io import fits

    return str(fits.Card(keyword, value, comment).image)


def _simple_value(value: Any) -> bool:
    """A meta value this module writes exactly as astropy would (else astropy writes it)."""
    if isinstance(value, (bool, np.bool_)):
        return True
    if isinstance(value, (int, np.integer)):
        return -(2**63) <= int(value) < 2**63
    if isinstance(value, (float, np.floating)):
        return math.isfinite(float(value))
    if isinstance(value, str):
        return len(value) <= 60 and value.isascii() and value.isprintable()
    return False


def _parse_value(text: str) -> Any:
    """Value of a card's value field; raises ValueError for what this parser skips."""
    text = text.strip()
    if text.startswith("'"):
        end, out = 1, []
        while True:
            close = text.index("'", end)
            out.append(text[end:close])
            if text[close + 1 : close + 2] == "'":
                out.append("'")
                end = close + 2
                continue
            rest = text[close + 1 :].strip()
            if rest and not rest.startswith("/"):
                raise ValueError(text)
            return "".join(out).rstrip()
    value = text.split("/", 1)[0].strip()
    if value == "T":
        return True
    if value == "F":
        return False
    if re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    return float(value.replace("D", "E"))


def _cards(
    buf: bytes | memoryview, offset: int, only: frozenset[str] | None = None
) -> tuple[list[tuple[str, Any]], bool, int]:
    """The plain ``KEYWORD = value`` cards of the header at ``offset``, whether that was
    every card (no COMMENT, CONTINUE, HIERARCH ...), and the offset of the HDU's data.

    With ``only``, just those keywords are parsed (the others are skipped unread).
    """
    cards: list[tuple[str, Any]] = []
    complete = True
    pos = offset
    while pos + 80 <= len(buf):
        card = bytes(buf[pos : pos + 80]).decode("ascii", errors="replace")
        pos += 80
        key = card[:8].rstrip()
        if key == "END":
            return cards, complete, offset + -(-(pos - offset) // _BLOCK) * _BLOCK
        if only is not None and key not in only:
            continue
        if card[8:10] != "= " or not _KEYWORD.match(key):
            complete = complete and not key.strip() and not card.strip()
            continue
        try:
            cards.append((key, _parse_value(card[10:])))
        except ValueError:
            complete = False
    raise ValueError("no END card")


#: The keywords that locate and describe an image HDU's data.
_DATA_KEYS = frozenset(
    {"BITPIX", "NAXIS", "BZERO", "BSCALE", "EXTNAME", "PCOUNT", "GCOUNT", "XTENSION", "CTYPE1"}
    | {f"NAXIS{i}" for i in range(1, 1000)}
)


def _pad(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % _BLOCK)


def _header_bytes(cards: Sequence[str]) -> bytes:
    return _pad(("".join(cards) + "END".ljust(80)).encode("ascii"), b" ")


# --- tables ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _unit_to_fits(unit: Any) -> str:
    return str(unit.to_string(format="fits"))


@functools.lru_cache(maxsize=256)
def _unit_from_fits(text: str) -> Any:
    import astropy.units as u

    return u.Unit(text, format="fits", parse_strict="warn")


def _variable_length(data: np.ndarray) -> tuple[str, list[np.ndarray]] | None:
    """TFORM code and big-endian arrays of an object column of 1-d numeric arrays."""
    arrays = [np.asarray(a) for a in data]
    dtypes = {a.dtype.str[1:] for a in arrays if isinstance(a, np.ndarray)}
    if not arrays or len(dtypes) != 1 or any(a.ndim != 1 for a in arrays):
        return None
    key = dtypes.pop()
    if key not in _DTYPE_TFORM or key == "u1":
        return None
    return _DTYPE_TFORM[key], [a.astype(">" + key) for a in arrays]


def _column_plan(table: Table) -> list[tuple[str, str, Any, str | None]] | None:
    """(name, TFORM, big-endian data, unit) per column, or None when astropy must write.

    Variable-length columns (object arrays of 1-d arrays) get a TFORM ``P<code>(<max>)``
    and, as data, the list of their big-endian arrays (the heap).
    """
    from astropy.table import Column, MaskedColumn

    plan: list[tuple[str, str, Any, str | None]] = []
    for col in table.columns.values():
        if type(col) not in (Column, MaskedColumn) or col.ndim != 1 or col.info.format:
            return None
        data = np.asarray(col)
        kind = data.dtype.kind
        if kind == "O":
            heap = _variable_length(data) if type(col) is Column and col.unit is None else None
            if heap is None:
                return None
            code, arrays = heap
            longest = max((len(a) for a in arrays), default=0)
            plan.append((col.info.name, f"P{code}({longest})", arrays, None))
            continue
        if isinstance(col, MaskedColumn) and np.any(col.mask):
            # astropy fills masked floats with NaN and strings with "" unless a fill
            # value other than numpy's default was chosen.
            fill = col.fill_value
            if kind == "f" and (np.isnan(fill) or fill == np.ma.default_fill_value(data)):
                data = np.where(col.mask, np.nan, data).astype(data.dtype)
            elif kind in "SU" and fill in ("N/A", b"N/A", "", b""):
                data = np.where(col.mask, "" if kind == "U" else b"", data).astype(data.dtype)
            else:
                return None
        elif isinstance(col, MaskedColumn) and kind in "biu":
            return None  # astropy writes TNULL for masked integer columns
        if kind == "b":
            tform, data = "L", np.where(data, b"T", b"F").astype("S1")
        elif kind in "iuf" and data.dtype.str[1:] in _DTYPE_TFORM:
            key = data.dtype.str[1:]
            tform, data = _DTYPE_TFORM[key], data.astype(">" + key if key != "u1" else "u1")
        elif kind in "SU" and data.dtype.itemsize > 0:
            width = data.dtype.itemsize // (4 if kind == "U" else 1)
            if kind == "U":
                if not all(s.isascii() for s in data.tolist()):
                    return None
                data = np.char.encode(data, "ascii") if len(data) else data.astype(f"S{width}")
            tform, data = f"{width}A", data.astype(f"S{width}")
        else:
            return None
        unit = None
        if col.unit is not None:
            try:
                unit = _unit_to_fits(col.unit)
            except ValueError:
                return None
        plan.append((col.info.name, tform, data, unit))
    return plan


def write_table(table: Table, path: Path) -> bool:
    """Write ``table`` as a FITS binary table like ``Table.write(format='fits')``.

    Variable-length columns (object arrays of 1-d int16/32/64 or float32/64 arrays, like
    the footprint span columns) go to the heap with ``P`` formats. Returns False (nothing
    written) for tables this module does not handle: other object or multidimensional
    columns, masked integers, display formats, mixins, complex meta.
    """
    from astropy.table import Table as _Table

    if type(table) is not _Table or len(table.colnames) == 0:
        return False
    meta = []
    for key, value in table.meta.items():
        upper = str(key).upper()
        if not _KEYWORD.match(upper) or not _simple_value(value):
            return False
        if _COLUMN_KEYWORD.match(upper) or upper in _TABLE_STRUCTURE:
            return False
        meta.append((upper, value))
    plan = _column_plan(table)
    if plan is None:
        return False
    rows = len(table)
    record, heap = _records(plan, rows)
    width = record.dtype.itemsize
    cards = [
        format_card("XTENSION", "BINTABLE", "binary table extension"),
        format_card("BITPIX", 8, "array data type"),
        format_card("NAXIS", 2, "number of array dimensions"),
        format_card("NAXIS1", width, "length of dimension 1"),
        format_card("NAXIS2", rows, "length of dimension 2"),
        format_card("PCOUNT", len(heap), "number of group parameters"),
        format_card("GCOUNT", 1, "number of groups"),
        format_card("TFIELDS", len(plan), "number of table fields"),
    ]
    for i, (name, tform, _, unit) in enumerate(plan, start=1):
        if not _simple_value(name) or len(name) > 68:
            return False
        cards += [format_card(f"TTYPE{i}", name), format_card(f"TFORM{i}", tform)]
        if unit is not None:
            cards.append(format_card(f"TUNIT{i}", unit))
    cards += [format_card(key, value) for key, value in meta]
    primary = [
        format_card("SIMPLE", True, "conforms to FITS standard"),
        format_card("BITPIX", 8, "array data type"),
        format_card("NAXIS", 0, "number of array dimensions"),
        format_card("EXTEND", True),
    ]
    body = _pad(record.tobytes() + heap, b"\0")
    path.write_bytes(_header_bytes(primary) + _header_bytes(cards) + body)
    return True


def _records(plan: list[tuple[str, str, Any, str | None]], rows: int) -> tuple[np.ndarray, bytes]:
    """The main table (one structured array) and the heap of the variable-length columns."""
    fields = [
        (f"f{i}", (">i4", (2,)) if tform.startswith("P") else data.dtype)
        for i, (_, tform, data, _) in enumerate(plan)
    ]
    record = np.empty(rows, dtype=fields)
    heap: list[bytes] = []
    size = 0
    for i, (_, tform, data, _) in enumerate(plan):
        if not tform.startswith("P"):
            record[f"f{i}"] = data
            continue
        descriptors = np.empty((rows, 2), dtype=np.int64)
        for k, arr in enumerate(data):
            chunk = arr.tobytes()
            descriptors[k] = (len(arr), size)
            heap.append(chunk)
            size += len(chunk)
        record[f"f{i}"] = descriptors
    return record, b"".join(heap)


def read_table(path: Path) -> Table | None:
    """Read the first extension of ``path`` like ``Table.read(path, format='fits', hdu=1)``.

    Returns None for files this module leaves to astropy (scaled or null-valued columns,
    vector columns, comment cards, long strings).
    """
    buf = path.read_bytes()
    _, _, start = _cards(buf, 0)
    if start >= len(buf):
        return None
    cards, complete, data_start = _cards(buf, start)
    if not complete or not cards or cards[0] != ("XTENSION", "BINTABLE"):
        return None
    header = dict(cards)
    if len(header) != len(cards):
        return None
    columns = _table_columns(header)
    if columns is None:
        return None
    rows = int(header["NAXIS2"])
    dtype = np.dtype([(f"f{i}", fmt) for i, (_, fmt, _, _) in enumerate(columns)])
    main = rows * dtype.itemsize
    heap_start = data_start + int(header.get("THEAP", main))
    if dtype.itemsize != header["NAXIS1"] or data_start + main + int(header.get("PCOUNT", 0)) > len(
        buf
    ):
        return None
    record = np.frombuffer(bytearray(buf[data_start : data_start + rows * dtype.itemsize]), dtype)
    return _build_table(record, columns, cards, memoryview(buf)[heap_start:])


def _table_columns(header: Mapping[str, Any]) -> list[tuple[str, str, str, Any]] | None:
    """(name, numpy format, TFORM code, unit) per column; None for what astropy must read."""
    columns = []
    for i in range(1, int(header.get("TFIELDS", 0)) + 1):
        tform = str(header.get(f"TFORM{i}", "")).strip()
        for extra in ("TNULL", "TSCAL", "TZERO", "TDIM", "TDISP"):
            if f"{extra}{i}" in header:
                return None
        variable = re.fullmatch(r"1?P([IJKED])\(\d+\)", tform)
        match = re.fullmatch(r"(\d*)([A-Z])", tform)
        if variable is not None:
            code = "P" + variable.group(1)
            columns.append((str(header.get(f"TTYPE{i}", f"col{i}")), "(2,)>i4", code, None))
            if f"TUNIT{i}" in header:
                return None
            continue
        if match is None:
            return None
        repeat, code = match.groups()
        if code == "A":
            fmt = f"S{int(repeat or 1)}"
        elif code in _TFORM and repeat in ("", "1"):
            fmt = _TFORM[code]
        else:
            return None
        columns.append(
            (str(header.get(f"TTYPE{i}", f"col{i}")), fmt, code, header.get(f"TUNIT{i}"))
        )
    return columns


def _build_table(
    record: np.ndarray,
    columns: list[tuple[str, str, str, Any]],
    cards: list[tuple[str, Any]],
    heap: memoryview,
) -> Table:
    from astropy.table import Column, MaskedColumn, Table

    built = []
    for i, (name, _, code, unit) in enumerate(columns):
        arr = record[f"f{i}"]
        mask = None
        if code.startswith("P"):
            built.append(Column(data=_heap_arrays(arr, code[1], heap), name=name, copy=False))
            continue
        if code == "L":
            arr = arr == b"T"
        elif arr.dtype.kind == "S":
            arr = np.strings.rstrip(arr)
            mask = arr == b""
        elif arr.dtype.kind == "f":
            mask = np.isnan(arr)
        if mask is not None and mask.any():
            fill = np.nan if arr.dtype.kind == "f" else b""
            column = MaskedColumn(data=arr, name=name, mask=mask, copy=False, fill_value=fill)
        else:
            column = Column(data=arr, name=name, copy=False)
        if unit is not None:
            column.unit = _unit_from_fits(str(unit))
        built.append(column)
    table = Table(built, copy=False)
    for key, value in cards:
        if key in _TABLE_STRUCTURE or _COLUMN_KEYWORD.match(key):
            continue
        table.meta[key] = value
    return table


def _heap_arrays(descriptors: np.ndarray, code: str, heap: memoryview) -> np.ndarray:
    """Object array of the (native-order) arrays a variable-length column points to."""
    dtype = np.dtype(_TFORM[code])
    out = np.empty(len(descriptors), dtype=object)
    for k, (count, offset) in enumerate(descriptors.tolist()):
        out[k] = np.frombuffer(heap, dtype=dtype, count=count, offset=offset).astype(
            dtype.newbyteorder("=")
        )
    return out


# --- images and exposures --------------------------------------------------------------

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
    if len(set(keys)) != len(keys) or not all(map(_KEYWORD.match, keys)):
        return None
    if not all(map(_simple_value, header.values())):
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
    return key, _pad(arr.astype(_BITPIX[key]).tobytes(), b"\0")


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
    parts = [_header_bytes(_image_cards(header, (), 8, first=True))]
    wcs_header = _card_images(exposure.wcs.to_header()) if exposure.wcs is not None else []
    assert wcs_header is not None  # an astropy Header always has card images
    for name, shape, (bitpix, body) in encoded:
        extra = wcs_header if name == "IMAGE" else []
        parts += [_header_bytes(_image_cards(extra, shape, bitpix, False, name)), body]
    path.write_bytes(b"".join(parts))
    return True


def read_exposure(path: Path) -> Exposure | None:
    """Read an exposure or a plain image file like the exposure formatter's astropy path.

    Returns None for files left to astropy (scaled data other than astropy's ``uint16``
    convention, groups, tables, unusual headers).
    """
    from astropy.io import fits

    buf = memoryview(path.read_bytes())
    hdus = []
    offset = 0
    while offset < len(buf):
        cards, _, data_start = _cards(buf, offset, _DATA_KEYS)
        head = dict(cards)
        naxes = [int(head.get(f"NAXIS{i}", 0)) for i in range(1, int(head.get("NAXIS", 0)) + 1)]
        size = (
            abs(int(head["BITPIX"]))
            // 8
            * int(head.get("GCOUNT", 1))
            * (int(head.get("PCOUNT", 0)) + (math.prod(naxes) if naxes else 0))
        )
        hdus.append((offset, data_start, head, tuple(reversed(naxes))))
        offset = data_start + -(-size // _BLOCK) * _BLOCK
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

    cards, complete, _ = _cards(header_bytes, 0)
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
