"""Fast writing of raw FITS files: header-only (``NAXIS = 0``) or one ``uint16`` image.

Building an :class:`astropy.io.fits.Header` costs milliseconds; writing ~45,000 raws
that way is minutes.  :class:`HeaderTemplate` formats a header once and then only
re-formats the cards that change (one :class:`astropy.io.fits.Card` each), so a file
costs tens of microseconds plus the write.  With ``image_shape`` the template describes
a primary ``uint16`` image stored as astropy stores one (``BITPIX = 16``,
``BZERO = 32768``) and :meth:`HeaderTemplate.write_image` appends the pixels.  The
result is a standard FITS file that astropy reads back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from rc2_platform.datastore.fits_io import format_card

__all__ = [
    "HeaderTemplate",
    "format_card",
    "header_only_bytes",
    "image_bytes",
    "write_header_only",
    "write_image",
]

_BLOCK = 2880
_PRIMARY_KEYS = ("SIMPLE", "BITPIX", "NAXIS", "EXTEND")


def _keyed_cards(
    header: fits.Header, image_shape: tuple[int, int] | None = None, bitpix: int = 16
) -> list[tuple[str, str]]:
    cards = [("SIMPLE", fits.Card("SIMPLE", True, "conforms to FITS standard").image)]
    if image_shape is None:
        cards += [
            ("BITPIX", fits.Card("BITPIX", 8, "array data type").image),
            ("NAXIS", fits.Card("NAXIS", 0, "number of array dimensions").image),
            ("EXTEND", fits.Card("EXTEND", True).image),
        ]
    else:
        ny, nx = image_shape
        cards += [
            ("BITPIX", fits.Card("BITPIX", bitpix, "array data type").image),
            ("NAXIS", fits.Card("NAXIS", 2, "number of array dimensions").image),
            ("NAXIS1", fits.Card("NAXIS1", nx).image),
            ("NAXIS2", fits.Card("NAXIS2", ny).image),
        ]
    for card in header.cards:
        if card.keyword in _PRIMARY_KEYS or card.keyword.startswith("NAXIS"):
            continue
        if card.keyword in ("BZERO", "BSCALE"):
            continue
        cards.append((card.keyword, card.image))
    if image_shape is not None and bitpix == 16:
        cards += [
            ("BSCALE", fits.Card("BSCALE", 1).image),
            ("BZERO", fits.Card("BZERO", 32768).image),
        ]
    return cards


def _primary_cards(header: fits.Header) -> list[str]:
    return [image for _, image in _keyed_cards(header)]


def _pad(cards: list[str]) -> bytes:
    text = "".join(cards) + "END".ljust(80)
    data = text.encode("ascii")
    return data + b" " * (-len(data) % _BLOCK)


def header_only_bytes(header: fits.Header) -> bytes:
    """The bytes of a FITS file whose only HDU is a data-less primary with ``header``."""
    return _pad(_primary_cards(header))


def image_bytes(pixels: np.ndarray) -> bytes:
    """The data unit of a ``uint16`` or ``float32`` image.

    ``uint16`` is stored as astropy stores it, ``BITPIX = 16`` with ``BZERO = 32768``:
    flipping the sign bit turns ``v`` into the signed ``v - 32768``.  ``float32`` is
    ``BITPIX = -32``.  FITS is big-endian.
    """
    if pixels.dtype == np.uint16:
        data = (pixels ^ np.uint16(0x8000)).astype(">u2").tobytes()
    elif pixels.dtype == np.float32:
        data = pixels.astype(">f4").tobytes()
    else:
        raise TypeError(f"expected uint16 or float32 pixels, got {pixels.dtype}")
    return data + b"\0" * (-len(data) % _BLOCK)


def write_image(path: Path, cards: Sequence[tuple[str, Any, str]], pixels: np.ndarray) -> None:
    """Write a primary ``float32`` or ``uint16`` image with ``(keyword, value, comment)``
    cards, formatted by :func:`format_card` without building an astropy header."""
    ny, nx = pixels.shape
    bitpix = 16 if pixels.dtype == np.uint16 else -32
    head = [
        format_card("SIMPLE", True, "conforms to FITS standard"),
        format_card("BITPIX", bitpix, "array data type"),
        format_card("NAXIS", 2, "number of array dimensions"),
        format_card("NAXIS1", nx),
        format_card("NAXIS2", ny),
    ]
    head += [format_card(key, value, comment) for key, value, comment in cards]
    if bitpix == 16:
        head += [format_card("BSCALE", 1), format_card("BZERO", 32768)]
    path.write_bytes(_pad(head) + image_bytes(pixels))


def write_header_only(path: Path, header: fits.Header) -> None:
    """Write a header-only FITS file."""
    path.write_bytes(header_only_bytes(header))


class HeaderTemplate:
    """A header formatted once, re-rendered with a few changed values.

    Parameters
    ----------
    header
        The full header; only keywords already in it can be changed by :meth:`render`.
    image_shape
        ``(ny, nx)`` of a primary image written by :meth:`write_image`; None for
        header-only files.
    bitpix
        16 (``uint16`` pixels, ``BZERO = 32768``) or -32 (``float32`` pixels).
    """

    def __init__(
        self,
        header: fits.Header,
        image_shape: tuple[int, int] | None = None,
        bitpix: int = 16,
    ):
        if bitpix not in (16, -32):
            raise ValueError(f"bitpix {bitpix} is not supported; use 16 (uint16) or -32")
        self.image_shape = image_shape
        self._dtype = np.dtype(np.uint16 if bitpix == 16 else np.float32)
        keyed = _keyed_cards(header, image_shape, bitpix)
        self._cards = [image for _, image in keyed]
        self._index = {key: i for i, (key, _) in enumerate(keyed)}
        self._comments = {card.keyword: card.comment for card in header.cards}

    def render(self, updates: Mapping[str, Any]) -> bytes:
        """Header-only FITS bytes with ``updates`` (keyword -> value) applied.

        Raises
        ------
        KeyError
            A keyword is not in the template.
        """
        cards = list(self._cards)
        for key, value in updates.items():
            cards[self._index[key]] = format_card(key, value, self._comments.get(key, ""))
        return _pad(cards)

    def write(self, path: Path, updates: Mapping[str, Any]) -> None:
        """Write :meth:`render` ``(updates)`` to ``path``."""
        path.write_bytes(self.render(updates))

    def write_image(self, path: Path, updates: Mapping[str, Any], pixels: np.ndarray) -> None:
        """Write the header with ``updates`` followed by ``pixels``.

        Raises
        ------
        ValueError
            The template has no image, or ``pixels`` has another shape or type.
        """
        if self.image_shape is None or pixels.shape != self.image_shape:
            raise ValueError(
                f"pixels of shape {pixels.shape} do not fit the template's image {self.image_shape}"
            )
        if pixels.dtype != self._dtype:
            raise ValueError(f"pixels of type {pixels.dtype} in a {self._dtype} template")
        path.write_bytes(self.render(updates) + image_bytes(pixels))
