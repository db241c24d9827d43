"""Bright-object masks of the simulated survey: radii of the masked circles.

The file format (:class:`MaskCircle`, :func:`read_mask_file`, :func:`write_mask_file`)
lives in :mod:`rc2_platform.core.mask_file`; it is re-exported here.
"""

from __future__ import annotations

import numpy as np

from rc2_platform.core.mask_file import MaskCircle, read_mask_file, write_mask_file

__all__ = ["MaskCircle", "mask_radius_arcsec", "read_mask_file", "write_mask_file"]


def mask_radius_arcsec(mag: np.ndarray | float) -> np.ndarray:
    """Mask radius for a star of magnitude ``mag``: 20" at mag 18, doubling every 1.5 mag."""
    return np.clip(20.0 * 10 ** (0.2 * (18.0 - np.asarray(mag, dtype=float))), 10.0, 300.0)
