"""A fast reader of FITS primary headers (raw ingest reads tens of thousands of them).

astropy parses and verifies every card lazily and costs milliseconds per header; this
reader parses the 80-character cards of the primary header directly (strings, logicals,
integers, floats), about fifty times faster. Anything it cannot parse falls back to
``astropy.io.fits.getheader``.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from astropy.io import fits

BLOCK = 2880
_MAX_BLOCKS = 200
_INT = re.compile(r"^[+-]?\d+$")


class HeaderFormatError(ValueError):
    """The bytes are not a FITS primary header."""


def _value(text: str) -> Any:
    text = text.strip()
    if text.startswith("'"):
        end = text.find("'", 1)
        while end != -1 and end + 1 < len(text) and text[end + 1] == "'":
            end = text.find("'", end + 2)
        if end == -1:
            raise HeaderFormatError(f"unterminated string {text!r}")
        return text[1:end].replace("''", "'").rstrip()
    body = text.split("/", 1)[0].strip()
    if body == "T":
        return True
    if body == "F":
        return False
    if body == "":
        return None
    if _INT.match(body):
        return int(body)
    return float(body.replace("D", "E"))


def parse_cards(data: bytes) -> tuple[dict[str, Any], int] | None:
    """Parse header cards from ``data``; ``(cards, header bytes)`` or None if no END yet."""
    out: dict[str, Any] = {}
    text = data.decode("ascii", errors="replace")
    for i in range(0, len(text), 80):
        card = text[i : i + 80]
        key = card[:8].rstrip()
        if key == "END":
            return out, (i // BLOCK + 1) * BLOCK
        if i == 0 and key != "SIMPLE":
            raise HeaderFormatError("does not start with SIMPLE")
        if card[8:10] != "= " or key in ("COMMENT", "HISTORY", ""):
            continue
        out[key] = _value(card[10:])
    return None


def read_primary_header(path: Path) -> tuple[dict[str, Any], int]:
    """``(cards, header size in bytes)`` of the primary HDU of ``path``.

    Raises
    ------
    OSError
        Unreadable file.
    HeaderFormatError
        Not FITS, or the header has no END card (truncated).
    """
    with open(path, "rb") as f:
        data = b""
        for _ in range(_MAX_BLOCKS):
            block = f.read(BLOCK)
            if len(block) < BLOCK:
                raise HeaderFormatError("the header ends before its END card (truncated file?)")
            data += block
            try:
                parsed = parse_cards(data)
            except (ValueError, UnicodeError) as exc:
                if data.startswith(b"SIMPLE"):
                    return _astropy(path, len(data))
                raise HeaderFormatError(str(exc)) from None
            if parsed is not None:
                return parsed
    raise HeaderFormatError(f"no END card in the first {_MAX_BLOCKS} blocks")


def _astropy(path: Path, size_hint: int) -> tuple[dict[str, Any], int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = fits.getheader(path, 0)
    size = -(-len(header.tostring()) // BLOCK) * BLOCK
    return {k: header[k] for k in header if k not in ("COMMENT", "HISTORY", "")}, max(
        size, size_hint
    )
