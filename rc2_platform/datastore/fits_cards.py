"""FITS header cards and blocks for the fast FITS paths (:mod:`.fits_table`, :mod:`.fits_image`).

Formats a card image the way astropy does, parses the plain ``KEYWORD = value`` cards of a
header, and pads headers and data to 2,880-byte blocks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from rc2_platform.errors import TruncatedFileError

__all__ = [
    "BLOCK",
    "KEYWORD",
    "format_card",
    "format_value",
    "header_bytes",
    "pad",
    "parse_cards",
    "parse_header",
    "parse_value",
    "simple_value",
    "truncated",
]

#: Bytes per FITS block: headers and data are padded to a multiple of it.
BLOCK = 2880
KEYWORD = re.compile(r"^[A-Z0-9_-]{1,8}$")


def format_value(value: Any) -> str:
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
        text = f"{keyword.upper():<8}= {format_value(value)}"
        if comment:
            text += f" / {comment}"
        if len(text) <= 80:
            return text.ljust(80)
        if len(f"{keyword.upper():<8}= {format_value(value)}") <= 80:
            return text[:80]
    from astropy.io import fits

    return str(fits.Card(keyword, value, comment).image)


def simple_value(value: Any) -> bool:
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


def parse_value(text: str) -> Any:
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


def parse_cards(
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
            return cards, complete, offset + -(-(pos - offset) // BLOCK) * BLOCK
        if only is not None and key not in only:
            continue
        if card[8:10] != "= " or not KEYWORD.match(key):
            complete = complete and not key.strip() and not card.strip()
            continue
        try:
            cards.append((key, parse_value(card[10:])))
        except ValueError:
            complete = False
    raise ValueError("no END card")


def parse_header(
    buf: bytes | memoryview, offset: int, only: frozenset[str] | None = None
) -> tuple[list[tuple[str, Any]], bool, int]:
    """:func:`parse_cards` of a FITS file's HDU at ``offset``.

    Raises
    ------
    TruncatedFileError
        If the header runs into the end of a file that starts as FITS (``SIMPLE  =``)
        without its END card.
    ValueError
        If the header has no END card and the file is not FITS at all.
    """
    try:
        return parse_cards(buf, offset, only)
    except ValueError:
        if bytes(buf[:9]) != b"SIMPLE  =":
            raise
        raise TruncatedFileError(
            f"the file is truncated: {len(buf)} bytes, but the header starting at byte "
            f"{offset} has no END card; re-copy or re-write it"
        ) from None


def truncated(size: int, hdu: str, end: int) -> TruncatedFileError:
    """The error for a file of ``size`` bytes whose HDU ``hdu`` is announced to end at ``end``."""
    return TruncatedFileError(
        f"the file is truncated: {size} bytes, but its HDU {hdu} ends at byte {end}; "
        "re-copy or re-write it"
    )


def pad(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % BLOCK)


def header_bytes(cards: Sequence[str]) -> bytes:
    return pad(("".join(cards) + "END".ljust(80)).encode("ascii"), b" ")
