"""Pixel-level surveys (``tiny``, ``rc2-pixels``): raws with real pixels and calibrations.

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
from rc2_platform.simulate._geometry import detector_updates
from rc2_platform.simulate._random import rng_for
from rc2_platform.simulate.fastfits import HeaderTemplate
from rc2_platform.simulate.faults import FaultPlan, RawFault
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

__all__ = [
    "PixelCamera",
    "TruthSources",
    "raw_header_template",
    "raw_relpath",
    "render_raw",
    "write_visit_raws",
]

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
    _epochs: dict[int, int] = field(default_factory=dict)

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

    def bias_epoch(self, visit: PlannedVisit) -> int:
        """Index of the bias epoch of ``visit`` (cached: astropy times cost milliseconds)."""
        if visit.visit not in self._epochs:
            self._epochs[visit.visit] = calib_epoch_index(self.bias_edges, visit.mjd)
        return self._epochs[visit.visit]

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


@dataclass(frozen=True)
class TruthSources:
    """The truth catalog as plain arrays, with unit vectors for fast cone selection.

    Rendering selects the sources near each detector with one dot product instead of
    projecting the whole (tract-sized) catalog through every detector's WCS.
    """

    ra: np.ndarray
    dec: np.ndarray
    size_arcsec: np.ndarray
    mags: dict[str, np.ndarray]
    xyz: np.ndarray

    @classmethod
    def from_table(cls, truth: Table) -> TruthSources:
        """Columns ``ra``, ``dec`` [deg], ``size_arcsec`` and ``<band>_mag`` of ``truth``."""
        ra = np.asarray(truth["ra"], dtype=float)
        dec = np.asarray(truth["dec"], dtype=float)
        mags = {
            name.removesuffix("_mag"): np.asarray(truth[name], dtype=float)
            for name in truth.colnames
            if name.endswith("_mag")
        }
        a, d = np.radians(ra), np.radians(dec)
        xyz = np.column_stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)])
        return cls(ra, dec, np.asarray(truth["size_arcsec"], dtype=float), mags, xyz)

    def near(self, ra: float, dec: float, radius_deg: float) -> np.ndarray:
        """Indices (ascending) of the sources within ``radius_deg`` of (ra, dec)."""
        a, d = np.radians(ra), np.radians(dec)
        centre = np.array([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)])
        return np.nonzero(self.xyz @ centre >= np.cos(np.radians(radius_deg)))[0]


#: Sources up to this many pixels outside a detector are rendered (their wings land on it).
_RENDER_PAD = 20


def render_raw(
    pcam: PixelCamera,
    visit: PlannedVisit,
    det: int,
    truth: TruthSources,
    zero_point: float,
    fault: RawFault | None = None,
) -> np.ndarray:
    """Render the pixels (``uint16``, data section + overscan) of one raw.

    ``fault`` (see :mod:`rc2_platform.simulate.faults`) leaves the sources out, renders
    them from a pointing off by ``offset_arcsec`` to the north, or widens their PSF.
    """
    cam = pcam.camera
    model = pcam.models[det]
    ny, nx = model.shape
    pixscale = geo.pixel_scale_arcsec() * cam.binning
    fault = fault or RawFault()
    dec = visit.dec + fault.offset_arcsec / 3600.0
    wcs = geo.detector_wcs(visit.ra, dec, visit.rot, det, cam.binning)
    centre_ra, centre_dec = wcs.all_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
    # A cone of angle r holds every point whose tangent-plane distance is <= r.
    reach = np.hypot(nx / 2 + _RENDER_PAD + 2, ny / 2 + _RENDER_PAD + 2) * pixscale / 3600.0
    near = truth.near(float(centre_ra), float(centre_dec), float(reach))
    x, y = wcs.all_world2pix(truth.ra[near], truth.dec[near], 0)
    pad = _RENDER_PAD
    inside = (x > -pad) & (x < nx + pad) & (y > -pad) & (y < ny + pad)
    if fault.no_sources:
        inside[:] = False
    chosen = near[inside]
    psf_sigma = fwhm_to_sigma(visit.fwhm_arcsec * fault.fwhm_factor)
    sigma_px = np.sqrt(psf_sigma**2 + truth.size_arcsec[chosen] ** 2) / pixscale
    flux = 10 ** (-0.4 * (truth.mags[visit.band][chosen] - zero_point)) * visit.exptime
    sources = render_sources((ny, nx), x[inside], y[inside], flux, sigma_px)
    epoch = pcam.bias_epoch(visit)
    return make_raw_pixels(
        rng_for(pcam.seed, "raw", visit.visit, det),
        cam,
        pcam.master_image("flat", det, visit.physical_filter, 0),
        pcam.master_image("bias", det, None, epoch),
        model.dark_rate,
        visit.sky_adu_per_s * visit.exptime,
        sources,
        visit.darktime,
    )


def raw_header_template(pcam: PixelCamera, visit: PlannedVisit, det: int) -> HeaderTemplate:
    """The header of ``visit``'s raw of ``det`` as a template for the visit's other raws.

    Only :data:`~rc2_platform.simulate._geometry.DETECTOR_KEYS` change between the
    detectors of a visit; :func:`write_visit_raws` checks that once per survey.
    """
    cam = pcam.camera
    ny, nx = pcam.models[det].shape
    header = geo.raw_header(visit, det, cam.binning)
    _layout_cards(header, cam, nx, ny)
    header["SEEING"] = (round(visit.fwhm_arcsec, 4), "simulated PSF FWHM, arcsec")
    return HeaderTemplate(header, image_shape=(ny, nx + cam.overscan_columns))


def write_visit_raws(
    root: Path,
    pcam: PixelCamera,
    visit: PlannedVisit,
    detectors: list[int],
    truth: TruthSources,
    zero_point: float,
    *,
    fast: bool = True,
    faults: FaultPlan | None = None,
) -> int:
    """Render and write the raws of ``detectors`` for one visit; return how many.

    ``fast`` formats the header once for the visit and re-renders the detector cards
    per file; otherwise every file gets its own full header. ``faults`` are rendered
    into the raws they hit (the headers stay as planned).
    """
    directory = root / raw_relpath(visit, detectors[0]).rsplit("/", 1)[0]
    directory.mkdir(parents=True, exist_ok=True)
    template = raw_header_template(pcam, visit, detectors[0]) if fast else None
    for det in detectors:
        fault = faults.for_raw(visit.visit, det) if faults is not None else None
        pixels = render_raw(pcam, visit, det, truth, zero_point, fault)
        if template is not None:
            updates = detector_updates(visit, det, pcam.camera.binning)
            template.write_image(root / raw_relpath(visit, det), updates, pixels)
        else:
            raw_header_template(pcam, visit, det).write_image(
                root / raw_relpath(visit, det), {}, pixels
            )
    return len(detectors)


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
