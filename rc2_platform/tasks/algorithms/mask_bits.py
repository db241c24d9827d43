"""Mask plane bits shared by every image the science algorithms produce.

Masks are ``int32`` arrays with the same shape as the image; each named plane is
one bit. The names follow the LSST science pipelines' mask planes.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

BAD = 1 << 0
"""Pixel is defective (bad column, zero/NaN flat, bad-pixel list)."""
SAT = 1 << 1
"""Pixel was at or above the saturation level in the raw image."""
INTRP = 1 << 2
"""Pixel value was interpolated from its neighbours."""
CR = 1 << 3
"""Pixel was hit by a cosmic ray."""
EDGE = 1 << 4
"""Pixel is too close to the image edge for a full detection kernel."""
DETECTED = 1 << 5
"""Pixel belongs to a detected source footprint."""
NO_DATA = 1 << 6
"""No input data contributes to this pixel (outside every input image)."""
BRIGHT_OBJECT = 1 << 7
"""Pixel lies inside a bright-object mask region."""
CLIPPED = 1 << 8
"""At least one input was rejected here by the coadd's outlier clipping."""

MASK_DTYPE = np.int32

MASK_PLANES: dict[str, int] = {
    "BAD": BAD,
    "SAT": SAT,
    "INTRP": INTRP,
    "CR": CR,
    "EDGE": EDGE,
    "DETECTED": DETECTED,
    "NO_DATA": NO_DATA,
    "BRIGHT_OBJECT": BRIGHT_OBJECT,
    "CLIPPED": CLIPPED,
}
"""Plane name -> bit value, e.g. for writing into a FITS header (``MP_<NAME>``)."""


def new_mask(shape: tuple[int, ...]) -> NDArray[np.int32]:
    """Return an all-clear mask of the given shape."""
    return np.zeros(shape, dtype=MASK_DTYPE)


def bits_from_names(names: list[str] | tuple[str, ...]) -> int:
    """Return the OR of the named mask planes.

    Raises
    ------
    KeyError
        If a name is not a known mask plane.
    """
    value = 0
    for name in names:
        value |= MASK_PLANES[name]
    return value


def plane_names(bits: int) -> list[str]:
    """Return the names of the planes set in ``bits``."""
    return [name for name, bit in MASK_PLANES.items() if bits & bit]
