"""Gnomonic (TAN) projection helpers on numpy arrays (private)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def tan_project(
    ra: NDArray[np.float64], dec: NDArray[np.float64], ra0: float, dec0: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Project (ra, dec) in degrees onto the tangent plane at (ra0, dec0); returns degrees."""
    a, d = np.radians(ra), np.radians(dec)
    a0, d0 = np.radians(ra0), np.radians(dec0)
    cos_c = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cos_c
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cos_c
    return np.degrees(xi), np.degrees(eta)


def tan_deproject(
    xi: NDArray[np.float64], eta: NDArray[np.float64], ra0: float, dec0: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Inverse of :func:`tan_project`: tangent-plane degrees to (ra, dec) degrees."""
    x, y = np.radians(xi), np.radians(eta)
    a0, d0 = np.radians(ra0), np.radians(dec0)
    rho = np.hypot(x, y)
    c = np.arctan(rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        dec = np.arcsin(
            np.cos(c) * np.sin(d0) + np.where(rho > 0, y * np.sin(c) * np.cos(d0) / rho, 0)
        )
    ra = a0 + np.arctan2(x * np.sin(c), rho * np.cos(d0) * np.cos(c) - y * np.sin(d0) * np.sin(c))
    return np.degrees(ra) % 360.0, np.degrees(dec)


def unit_vectors(ra: NDArray[np.float64], dec: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return an (N, 3) array of unit vectors for (ra, dec) in degrees."""
    a, d = np.radians(ra), np.radians(dec)
    return np.column_stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)])


def chord_from_arcsec(arcsec: float) -> float:
    """Chord length on the unit sphere of an angular separation in arcseconds."""
    return float(2.0 * np.sin(np.radians(arcsec / 3600.0) / 2.0))
