"""Fast reading and writing of the FITS files the platform writes (tables, exposures).

astropy's general FITS machinery costs 10-60 ms per small file (header verification,
configuration look-ups per card, column objects); a whole tract writes and reads
~100,000 of them. The functions here handle the plain cases directly — binary tables of
scalar numeric, boolean and string columns with simple meta; images and exposures
(IMAGE/MASK/VARIANCE extensions) with a TAN WCS — and return ``False``/``None`` for
anything else, where the formatter uses astropy. The files are standard FITS that astropy
reads back to the same objects, and what is read equals what astropy's readers give
(column types, units, masks of NaN and empty strings, meta, header cards).

The work is split by what is read or written: :mod:`.fits_cards` (header cards and
blocks), :mod:`.fits_table` (binary tables), :mod:`.fits_image` (images and exposures).
"""

from __future__ import annotations

from rc2_platform.datastore.fits_cards import format_card
from rc2_platform.datastore.fits_image import read_exposure, write_exposure
from rc2_platform.datastore.fits_table import read_table, write_table

__all__ = [
    "format_card",
    "read_exposure",
    "read_table",
    "write_exposure",
    "write_table",
]
