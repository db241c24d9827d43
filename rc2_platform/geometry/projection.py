"""Vectorized gnomonic (TAN) projection between tangent-plane and sky coordinates.

Standard coordinates ``(xi, eta)`` are in degrees on the tangent plane at ``(ra0, dec0)``:
``xi`` grows toward the east (increasing RA), ``eta`` toward the north. This is the
FITS ``TAN`` projection with ``LONPOLE = 180``, so a WCS whose CD matrix maps pixels to
``(xi, eta)`` gives the same sky positions as astropy (checked in the tests). All
functions broadcast, so thousands of frames are projected in one call.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from rc2_platform.geometry.regions import lonlat_to_vectors, unit_vectors_to_radec

__all__ = ["tangent_basis", "tan_deproject", "tan_project", "tan_deproject_radec"]

FloatArray = npt.NDArray[np.float64]


def tangent_basis(
    ra0_deg: npt.ArrayLike, dec0_deg: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return (center, east, north) unit vectors of the tangent plane(s), each ``(..., 3)``."""
    ra = np.radians(np.asarray(ra0_deg, dtype=np.float64))
    dec = np.radians(np.asarray(dec0_deg, dtype=np.float64))
    ra, dec = np.broadcast_arrays(ra, dec)
    center = lonlat_to_vectors(np.degrees(ra), np.degrees(dec))
    east = np.stack([-np.sin(ra), np.cos(ra), np.zeros_like(ra)], axis=-1)
    north = np.stack([-np.sin(dec) * np.cos(ra), -np.sin(dec) * np.sin(ra), np.cos(dec)], axis=-1)
    return center, east, north


def tan_deproject(
    ra0_deg: npt.ArrayLike, dec0_deg: npt.ArrayLike, xi_deg: npt.ArrayLike, eta_deg: npt.ArrayLike
) -> FloatArray:
    """Standard coordinates to (unnormalized) sky direction vectors.

    Parameters
    ----------
    ra0_deg, dec0_deg : array_like
        Tangent point(s), shape ``S`` (broadcast against ``xi``/``eta`` after adding
        trailing axes yourself, e.g. ``ra0[:, None]``).
    xi_deg, eta_deg : array_like
        Standard coordinates in degrees.

    Returns
    -------
    vectors : `numpy.ndarray`
        Shape ``broadcast_shape + (3,)``; direction vectors, not normalized (normalize
        or pass to :func:`~rc2_platform.geometry.regions.unit_vectors_to_radec`).
    """
    c, e, n = tangent_basis(ra0_deg, dec0_deg)
    xi = np.radians(np.asarray(xi_deg, dtype=np.float64))[..., None]
    eta = np.radians(np.asarray(eta_deg, dtype=np.float64))[..., None]
    # FITS intermediate world coordinates are tangent-plane offsets in degrees
    # (R = 180/pi * tan(distance)), so the plane offset is simply radians(xi).
    return c + xi * e + eta * n


def tan_deproject_radec(
    ra0_deg: npt.ArrayLike, dec0_deg: npt.ArrayLike, xi_deg: npt.ArrayLike, eta_deg: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Like :func:`tan_deproject` but return (ra, dec) in degrees."""
    return unit_vectors_to_radec(tan_deproject(ra0_deg, dec0_deg, xi_deg, eta_deg))


def tan_project(
    ra0_deg: npt.ArrayLike, dec0_deg: npt.ArrayLike, ra_deg: npt.ArrayLike, dec_deg: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Sky (ra, dec) in degrees to standard coordinates (xi, eta) in degrees.

    Points more than 90 degrees from the tangent point give meaningless values
    (the TAN projection is only defined on the near hemisphere); callers check.
    """
    c, e, n = tangent_basis(ra0_deg, dec0_deg)
    v = lonlat_to_vectors(ra_deg, dec_deg)
    denom = np.sum(v * c, axis=-1)
    xi = np.degrees(np.sum(v * e, axis=-1) / denom)
    eta = np.degrees(np.sum(v * n, axis=-1) / denom)
    return xi, eta
