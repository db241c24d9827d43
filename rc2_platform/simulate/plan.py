"""The observing plan: visits with pointings, times, seeing and sky, from a preset and seed.

Visit ids start at each tract plan's ``first_visit`` and step by 2 (HSC visit ids are
even).  Within a band, visit ``k`` of ``n`` points at the ``k``-th point of a sunflower
(Fermat spiral) pattern of radius ``dither_radius_deg`` around the aim point, rotated by
a per-band phase, so any number of visits spreads evenly over a disk.  Band visit ``k`` is
observed on night ``k % nights``; nights are ``night_spacing_days`` apart from
``start_date`` and each tract is observed one day later than the previous one, starting
an hour before the aim point transits at Subaru (so airmasses are realistic), one
exposure every ``exptime + 60`` seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from astropy.time import Time

from rc2_platform.errors import ConfigError
from rc2_platform.simulate._random import rng_for
from rc2_platform.simulate.presets import SimulationPreset

__all__ = ["PlannedVisit", "calib_epoch_index", "dither_offsets", "make_visit_plan"]

_GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))
_OVERHEAD_S = 60.0
_DARK_EXTRA_S = 1.2


@dataclass(frozen=True, slots=True)
class PlannedVisit:
    """One planned visit (= exposure) of the synthetic survey."""

    visit: int
    tract: int
    band: str
    physical_filter: str
    ra: float
    dec: float
    rot: float
    mjd: float
    exptime: float
    darktime: float
    fwhm_arcsec: float
    sky_adu_per_s: float
    night: int

    @property
    def object_name(self) -> str:
        """OBJECT keyword: the field name used by the survey."""
        return {9813: "COSMOS", 9697: "VVDS", 9615: "GAMA15H"}.get(self.tract, f"TRACT{self.tract}")


def dither_offsets(n: int, radius_deg: float, phase: float) -> tuple[np.ndarray, np.ndarray]:
    """Sunflower-pattern offsets (east, north) in degrees of ``n`` pointings in a disk."""
    k = np.arange(n, dtype=float)
    r = radius_deg * np.sqrt((k + 0.5) / max(n, 1)) if n > 1 else np.zeros(n)
    theta = k * _GOLDEN_ANGLE + phase
    return r * np.cos(theta), r * np.sin(theta)


def _offset_pointing(
    ra0: float, dec0: float, east: np.ndarray, north: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    # Gnomonic de-projection of tangent-plane offsets around (ra0, dec0).
    a0, d0 = np.radians(ra0), np.radians(dec0)
    xi, eta = np.radians(east), np.radians(north)
    denom = np.cos(d0) - eta * np.sin(d0)
    ra = a0 + np.arctan2(xi, denom)
    dec = np.arctan2(np.sin(d0) + eta * np.cos(d0), np.hypot(xi, denom))
    return np.degrees(ra) % 360.0, np.degrees(dec)


def _transit_offset(day: float, ra: float) -> float:
    """Fraction of the UTC day ``day`` (integer MJD) when ``ra`` transits at Subaru."""
    gmst0 = 280.46061837 + 360.98564736629 * (day - 51544.5)
    return float(((ra - gmst0 + 155.476667) % 360.0) / 360.98564736629)


def make_visit_plan(
    preset: SimulationPreset,
    seed: int,
    aim_points: Mapping[int, tuple[float, float]],
    tracts: list[int] | None = None,
) -> list[PlannedVisit]:
    """All visits of ``preset`` (optionally only those aimed at ``tracts``).

    Parameters
    ----------
    preset
        The simulation preset.
    seed
        Survey seed (seeing, sky level, rotator angle per visit).
    aim_points
        Tract id -> (ra, dec) in degrees that the tract's dither pattern is centred on.
    tracts
        Subset of the preset's tracts to plan; all when None.
    """
    wanted = preset.tract_ids() if tracts is None else tracts
    unknown = sorted(set(wanted) - set(preset.tract_ids()))
    if unknown:
        raise ConfigError(
            f"tracts {unknown} are not in preset {preset.name!r} (it has {preset.tract_ids()})"
        )
    start = float(np.floor(Time(preset.start_date, format="iso", scale="utc").mjd))
    visits: list[PlannedVisit] = []
    for t_index, plan in enumerate(preset.tracts):
        if plan.tract not in wanted:
            continue
        ra0, dec0 = aim_points[plan.tract]
        day0 = start + t_index
        slots: dict[int, int] = {}
        vid = plan.first_visit
        for b_index, band in enumerate(preset.filters):
            n = plan.visits_per_band.get(band, 0)
            east, north = dither_offsets(n, plan.dither_radius_deg, phase=1.3 * b_index)
            ras, decs = _offset_pointing(ra0, dec0, east, north)
            for k in range(n):
                night = k % preset.nights
                slot = slots.get(night, 0)
                slots[night] = slot + 1
                rng = rng_for(seed, "visit", vid)
                day = day0 + night * preset.night_spacing_days
                mjd = day + _transit_offset(day, ra0) - 1.0 / 24.0
                mjd += slot * (preset.exptime + _OVERHEAD_S) / 86400.0
                fwhm_lo, fwhm_hi = preset.camera.fwhm_arcsec if preset.camera else (0.6, 0.9)
                sky = preset.camera.sky_adu_per_s[band] if preset.camera else 0.0
                visits.append(
                    PlannedVisit(
                        visit=vid,
                        tract=plan.tract,
                        band=band,
                        physical_filter=preset.filters[band],
                        ra=float(ras[k]),
                        dec=float(decs[k]),
                        rot=float(rng.uniform(-10.0, 10.0)),
                        mjd=float(mjd),
                        exptime=preset.exptime,
                        darktime=preset.exptime + _DARK_EXTRA_S,
                        fwhm_arcsec=float(rng.uniform(fwhm_lo, fwhm_hi)),
                        sky_adu_per_s=float(sky * rng.uniform(0.9, 1.1)),
                        night=night,
                    )
                )
                vid += 2
    return visits


def calib_epoch_index(edges_iso: list[str], mjd: float) -> int:
    """Index of the validity epoch ``[edges[i], edges[i+1])`` (TAI) containing ``mjd`` (UTC).

    Raises
    ------
    ConfigError
        No epoch contains the time: the preset's calibration epochs do not cover its visits.
    """
    t = Time(mjd, format="mjd", scale="utc").tai.mjd
    edges = Time(edges_iso, scale="tai").mjd
    for i in range(len(edges) - 1):
        if edges[i] <= t < edges[i + 1]:
            return i
    raise ConfigError(
        f"observation at MJD {mjd:.5f} is outside every calibration epoch {edges_iso}; "
        "widen calib_epochs in the preset"
    )
