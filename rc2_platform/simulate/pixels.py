"""The pixel-level survey (preset ``tiny``): raws with real pixels and their calibrations.

See :mod:`rc2_platform.simulate.render` for the raw layout and the signal model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Table

from rc2_platform.simulate import _geometry as geo
from rc2_platform.simulate._random import rng_for
from rc2_platform.simulate.plan import PlannedVisit, calib_epoch_index
from rc2_platform.simulate.presets import CameraSettings, SimulationPreset
from rc2_platform.simulate.render import (
    DetectorModel,
    detector_model,
    fwhm_to_sigma,
    make_raw_pixels,
    master_bias,
    master_dark,
    master_flat,
    render_sources,
)

__all__ = ["PixelCamera", "raw_relpath", "write_pixel_raws"]

#: Radius of the field of view used to scale vignetting (degrees).
FIELD_RADIUS_DEG = 0.75


def raw_relpath(visit: PlannedVisit, detector: int) -> str:
    """Path of a raw relative to the survey directory."""
    return (
        f"raw/{visit.physical_filter}/{visit.visit:07d}/HSC-{visit.visit:07d}-{detector:03d}.fits"
    )


@dataclass
class PixelCamera:
    """Everything fixed about the camera of a pixel survey: detector signatures and masters."""

    seed: int
    camera: CameraSettings
    models: dict[int, DetectorModel]
    bias_edges: list[str]
    _cache: dict[tuple[str, int, str | None, int], np.ndarray] = field(default_factory=dict)

    @classmethod
    def build(cls, preset: SimulationPreset, seed: int, detectors: list[int]) -> PixelCamera:
        """Build the detector models of ``detectors`` for a pixel preset."""
        assert preset.camera is not None
        models = {
            det: detector_model(
                seed,
                det,
                geo.focal_plane_radius(det, preset.camera.binning) / FIELD_RADIUS_DEG,
                preset.camera,
            )
            for det in detectors
        }
        return cls(seed, preset.camera, models, list(preset.calib_epochs.bias))

    def master_image(
        self, ctype: str, det: int, physical_filter: str | None, epoch: int
    ) -> np.ndarray:
        """Master calibration image (``ImageMaker`` of :mod:`rc2_platform.simulate.calibs`).

        Images are cached: the raws use exactly the same arrays (the true signature).
        """
        key = (ctype, det, physical_filter, epoch if ctype == "bias" else 0)
        if key not in self._cache:
            model = self.models[det]
            if ctype == "bias":
                image = master_bias(model, epoch, self.seed)
            elif ctype == "dark":
                image = master_dark(model)
            else:
                assert physical_filter is not None
                image = master_flat(model, physical_filter, self.seed)
            self._cache[key] = image
        return self._cache[key]

    def defects(self) -> Table:
        """Dead columns of every detector (truth, HDU ``DEFECTS``)."""
        rows = [(det, col) for det, m in sorted(self.models.items()) for col in m.bad_columns]
        return Table(rows=rows or None, names=("detector", "column"), dtype=(np.int32, np.int32))


def _layout_cards(header: fits.Header, camera: CameraSettings, nx: int, ny: int) -> None:
    header["DATASEC"] = (f"[1:{nx},1:{ny}]", "data section (binned pixels)")
    header["BIASSEC"] = (
        f"[{nx + 1}:{nx + camera.overscan_columns},1:{ny}]",
        "serial overscan section",
    )
    header["GAIN"] = (camera.gain, "e-/ADU")
    header["RDNOISE"] = (camera.read_noise, "read noise, e-")
    header["SATURATE"] = (camera.saturation, "ADU, pixels at or above are saturated")


def render_raw(
    pcam: PixelCamera, visit: PlannedVisit, det: int, truth: Table, zero_point: float
) -> tuple[np.ndarray, fits.Header]:
    """Render one raw: pixels (uint16) and its HSC primary header."""
    cam = pcam.camera
    model = pcam.models[det]
    ny, nx = model.shape
    wcs = geo.detector_wcs(visit.ra, visit.dec, visit.rot, det, cam.binning)
    x, y = wcs.all_world2pix(np.asarray(truth["ra"]), np.asarray(truth["dec"]), 0)
    pad = 20
    inside = (x > -pad) & (x < nx + pad) & (y > -pad) & (y < ny + pad)
    pixscale = geo.pixel_scale_arcsec() * cam.binning
    psf_sigma = fwhm_to_sigma(visit.fwhm_arcsec)
    size = np.asarray(truth["size_arcsec"])[inside]
    sigma_px = np.sqrt(psf_sigma**2 + size**2) / pixscale
    mag = np.asarray(truth[f"{visit.band}_mag"])[inside]
    flux = 10 ** (-0.4 * (mag - zero_point)) * visit.exptime
    sources = render_sources((ny, nx), x[inside], y[inside], flux, sigma_px)
    epoch = calib_epoch_index(pcam.bias_edges, visit.mjd)
    pixels = make_raw_pixels(
        rng_for(pcam.seed, "raw", visit.visit, det),
        cam,
        pcam.master_image("flat", det, visit.physical_filter, 0),
        pcam.master_image("bias", det, None, epoch),
        model.dark_rate,
        visit.sky_adu_per_s * visit.exptime,
        sources,
        visit.darktime,
    )
    header = geo.raw_header(visit, det, cam.binning)
    _layout_cards(header, cam, nx, ny)
    header["SEEING"] = (round(visit.fwhm_arcsec, 4), "simulated PSF FWHM, arcsec")
    return pixels, header


def write_pixel_raws(
    root: Path,
    pcam: PixelCamera,
    visits: list[PlannedVisit],
    detectors: list[int],
    truth: Table,
    zero_points: dict[str, float],
) -> list[Path]:
    """Render and write every raw; return the files written."""
    paths = []
    for visit in visits:
        for det in detectors:
            pixels, header = render_raw(pcam, visit, det, truth, zero_points[visit.band])
            path = root / raw_relpath(visit, det)
            path.parent.mkdir(parents=True, exist_ok=True)
            hdu = fits.PrimaryHDU(pixels, header=header)
            hdu.writeto(path, overwrite=True)
            paths.append(path)
    return paths


def visits_table(visits: list[PlannedVisit], bias_edges: list[str]) -> Table:
    """Truth HDU ``VISITS``: the observing conditions of every visit."""
    table = Table()
    table["visit"] = np.array([v.visit for v in visits], dtype=np.int64)
    table["tract"] = np.array([v.tract for v in visits], dtype=np.int64)
    table["band"] = [v.band for v in visits]
    table["physical_filter"] = [v.physical_filter for v in visits]
    table["ra"] = np.array([v.ra for v in visits]) * u.deg
    table["dec"] = np.array([v.dec for v in visits]) * u.deg
    table["rot"] = np.array([v.rot for v in visits]) * u.deg
    table["mjd"] = np.array([v.mjd for v in visits])
    table["exptime"] = np.array([v.exptime for v in visits]) * u.s
    table["fwhm"] = np.array([v.fwhm_arcsec for v in visits]) * u.arcsec
    table["sky"] = np.array([v.sky_adu_per_s for v in visits]) * u.adu / u.s
    table["bias_epoch"] = np.array(
        [calib_epoch_index(bias_edges, v.mjd) for v in visits], dtype=np.int32
    )
    return table
