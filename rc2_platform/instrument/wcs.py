"""Detector WCS and sky footprints from a pointing, a rotator angle and the layout.

Model (exact for our synthetic camera, approximate for the real one: no optical
distortion). A detector pixel maps to the focal plane by the detector's yaw and centre;
the focal plane maps to the tangent plane at the pointing with a uniform pixel scale;
the rotator angle ``rot`` (degrees, the header's ``INST-PA``) is the position angle of
the focal-plane +y axis, measured from north through east. At ``rot = 0`` north is up
(+y) and east is left (-x), the usual sky orientation. Everything in a detector's raw
pixel grid is affine up to the TAN projection, so an astropy ``WCS`` with a CD matrix
represents it exactly; :func:`detector_regions` evaluates the same model with numpy for
many exposures and detectors at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import lsst.sphgeom as sphgeom
import numpy as np
import numpy.typing as npt
from astropy.wcs import WCS

from rc2_platform.errors import IngestError
from rc2_platform.geometry import encode_quads, tan_deproject, unit_vectors_to_radec
from rc2_platform.instrument.camera import Camera, load_camera

__all__ = ["DetectorFootprints", "detector_linear_map", "detector_regions", "detector_wcs"]

FloatArray = npt.NDArray[np.float64]


def _rot_matrix(deg: npt.ArrayLike) -> FloatArray:
    a = np.radians(np.asarray(deg, dtype=np.float64))
    c, s = np.cos(a), np.sin(a)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def _sky_matrix(rot_deg: npt.ArrayLike) -> FloatArray:
    """Focal-plane (x, y) -> standard coordinates (xi, eta), per unit scale."""
    a = np.radians(np.asarray(rot_deg, dtype=np.float64))
    c, s = np.cos(a), np.sin(a)
    return np.stack([np.stack([-c, s], -1), np.stack([s, c], -1)], -2)


def _check_binning(camera: Camera, binning: int) -> None:
    if binning < 1 or camera.detector_nx % binning or camera.detector_ny % binning:
        raise IngestError(
            f"binning {binning} does not divide the {camera.detector_nx}x{camera.detector_ny} "
            "detector; use 1, 2, 4, 8 or 16"
        )


def detector_linear_map(
    rot_deg: float, detector_id: int, binning: int = 1, camera: Camera | None = None
) -> tuple[FloatArray, FloatArray]:
    """Return ``(cd, crpix0)``: the CD matrix (deg/pixel) and the 0-based boresight pixel.

    Standard coordinates of binned pixel ``p`` (0-based) are ``cd @ (p - crpix0)``.
    """
    camera = camera or load_camera()
    _check_binning(camera, binning)
    det = camera.detector(detector_id)
    scale = camera.pixel_scale_arcsec / 3600.0
    yaw = _rot_matrix(det.yaw)
    cd = scale * binning * (_sky_matrix(rot_deg) @ yaw)
    q0 = np.array([(camera.detector_nx - 1) / 2, (camera.detector_ny - 1) / 2])
    centre = np.array([det.x, det.y])
    # c + Y (b p + (b-1)/2 - q0) = 0  =>  p = (q0 - (b-1)/2 - Y^T c) / b
    crpix0 = (q0 - (binning - 1) / 2 - yaw.T @ centre) / binning
    return cd, crpix0


def detector_wcs(
    ra: float,
    dec: float,
    rot_deg: float,
    detector_id: int,
    binning: int = 1,
    camera: Camera | None = None,
) -> WCS:
    """Return the astropy WCS of a detector's raw pixel grid for one pointing.

    Parameters
    ----------
    ra, dec : float
        Boresight (tracking) position in degrees.
    rot_deg : float
        Rotator position angle (``INST-PA``) in degrees.
    detector_id : int
        Detector number.
    binning : int
        On-chip binning factor of the raw (1 = full resolution); the WCS is for the
        ``(nx // binning, ny // binning)`` binned pixel grid.
    camera : `Camera`, optional
        Camera to use; the shipped HSC layout by default.

    Returns
    -------
    wcs : `astropy.wcs.WCS`
        A TAN WCS (``CD`` matrix) mapping raw pixels to ICRS degrees.
    """
    cd, crpix0 = detector_linear_map(rot_deg, detector_id, binning, camera)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.crval = [float(ra) % 360.0, float(dec)]
    wcs.wcs.crpix = [float(crpix0[0]) + 1.0, float(crpix0[1]) + 1.0]
    wcs.wcs.cd = cd
    wcs.wcs.lonpole = 180.0
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.equinox = 2000.0
    camera = camera or load_camera()
    wcs.pixel_shape = (camera.detector_nx // binning, camera.detector_ny // binning)
    return wcs


@dataclass(frozen=True)
class DetectorFootprints:
    """Sky footprints of ``m`` detectors in each of ``n`` exposures.

    Attributes
    ----------
    detector_ids : numpy.ndarray
        Shape ``(m,)``.
    vectors : numpy.ndarray
        Corner unit vectors, shape ``(n, m, 4, 3)``.
    """

    detector_ids: npt.NDArray[np.int64]
    vectors: FloatArray

    @property
    def corners_radec(self) -> tuple[FloatArray, FloatArray]:
        """Corner (ra, dec) in degrees, each of shape ``(n, m, 4)``."""
        return unit_vectors_to_radec(self.vectors)

    def encoded(self) -> list[bytes]:
        """Encoded ConvexPolygon bytes, flattened exposure-major (``i * m + j``)."""
        return encode_quads(self.vectors.reshape(-1, 4, 3))

    def polygon(self, i: int, j: int) -> sphgeom.ConvexPolygon:
        """The region of detector index ``j`` in exposure index ``i``."""
        return sphgeom.ConvexPolygon([sphgeom.UnitVector3d(*v) for v in self.vectors[i, j]])


def detector_regions(
    ra: npt.ArrayLike,
    dec: npt.ArrayLike,
    rot_deg: npt.ArrayLike,
    detector_ids: npt.ArrayLike | None = None,
    camera: Camera | None = None,
) -> DetectorFootprints:
    """Sky footprints of many detectors for many pointings, vectorized.

    Parameters
    ----------
    ra, dec, rot_deg : array_like
        Pointings (degrees), each of shape ``(n,)`` (scalars are accepted).
    detector_ids : array_like, optional
        Detectors, shape ``(m,)``; all detectors (science and focus) by default.
    camera : `Camera`, optional
        Camera to use; the shipped HSC layout by default.

    Returns
    -------
    footprints : `DetectorFootprints`
        Outer pixel-edge corners of every (exposure, detector) pair, independent of
        binning. The same model as :func:`detector_wcs`.
    """
    camera = camera or load_camera()
    ids = np.asarray(
        sorted(camera.detectors) if detector_ids is None else detector_ids, dtype=np.int64
    )
    ra_a = np.atleast_1d(np.asarray(ra, dtype=np.float64))
    dec_a = np.atleast_1d(np.asarray(dec, dtype=np.float64))
    rot_a = np.atleast_1d(np.asarray(rot_deg, dtype=np.float64))
    centres, yaws = camera.detector_geometry(ids)
    hx, hy = camera.detector_nx / 2, camera.detector_ny / 2
    local = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])  # (4, 2), pixel edges
    # Focal-plane corners: (m, 4, 2)
    fp = centres[:, None, :] + np.einsum("mij,kj->mki", _rot_matrix(yaws), local)
    scale = camera.pixel_scale_arcsec / 3600.0
    sky = scale * _sky_matrix(rot_a)  # (n, 2, 2)
    std = np.einsum("nij,mkj->nmki", sky, fp)  # (n, m, 4, 2)
    vec = tan_deproject(ra_a[:, None, None], dec_a[:, None, None], std[..., 0], std[..., 1])
    vec /= np.linalg.norm(vec, axis=-1, keepdims=True)
    return DetectorFootprints(ids, vec)
