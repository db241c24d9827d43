"""Fast reading and writing of plain FITS binary tables (see :mod:`.fits_io`)."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rc2_platform.datastore.fits_cards import (
    KEYWORD,
    format_card,
    header_bytes,
    pad,
    parse_header,
    simple_value,
    truncated,
)

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = ["read_table", "write_table"]

_COLUMN_KEYWORD = re.compile(
    r"^(TTYPE|TFORM|TUNIT|TNULL|TSCAL|TZERO|TDISP|TBCOL|TDIM|TCTYP|TCUNI|TCRPX|TCRVL|TCDLT|"
    r"TRPOS)[0-9]+$"
)
_TABLE_STRUCTURE = frozenset(
    {"XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "TFIELDS", "THEAP"}
)
_TFORM = {"K": ">i8", "J": ">i4", "I": ">i2", "B": "u1", "D": ">f8", "E": ">f4", "L": "S1"}
_DTYPE_TFORM = {"i8": "K", "i4": "J", "i2": "I", "u1": "B", "f8": "D", "f4": "E"}


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
        if not KEYWORD.match(upper) or not simple_value(value):
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
        if not simple_value(name) or len(name) > 68:
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
    body = pad(record.tobytes() + heap, b"\0")
    path.write_bytes(header_bytes(primary) + header_bytes(cards) + body)
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

    Raises
    ------
    TruncatedFileError
        If the file is shorter than its headers announce (a truncated copy).
    """
    buf = path.read_bytes()
    _, _, start = parse_header(buf, 0)
    if start >= len(buf):
        return None
    cards, complete, data_start = parse_header(buf, start)
    header = dict(cards)
    if header.get("XTENSION") == "BINTABLE":
        end = data_start + int(header.get("NAXIS1", 0)) * int(header.get("NAXIS2", 0))
        end += int(header.get("PCOUNT", 0))
        if end > len(buf):
            raise truncated(len(buf), str(header.get("EXTNAME", "#1")), end)
    if not complete or not cards or cards[0] != ("XTENSION", "BINTABLE"):
        return None
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
