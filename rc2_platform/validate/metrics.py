"""Validation statistics: match measured objects to the truth catalog and compare.

Pure functions on astropy Tables (no Butler): :func:`match_to_truth` pairs truth
objects with measured objects (``astropy.coordinates.match_coordinates_sky``, one-to-one,
nearest first); :func:`compute_metrics` turns the matches into per-band photometric,
astrometric and completeness metrics with PASS/FAIL against the issue's bounds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord, match_coordinates_sky
from astropy.table import Table
from numpy.typing import NDArray

from rc2_platform.tasks.algorithms.photometry_units import njy_to_mag

#: Flags that exclude a measurement from the photometric statistics.
QUALITY_FLAGS = ("flag_edge", "flag_bad", "flag_saturated", "flag_bright_object")


@dataclass(frozen=True)
class ValidationConfig:
    """What is measured and the bounds it must meet (defaults: issue 6).

    Attributes
    ----------
    bright_mag : float
        Stars brighter than this (truth, per band) enter the photometric and
        astrometric statistics.
    depth_mag : float
        Completeness is measured for stars brighter than this (truth, per band).
    match_radius_arcsec : float
        Largest truth-to-measurement separation of a match.
    flux_column : str
        Calibrated flux column (nJy) of the measured catalogs.
    max_median_offset, max_scatter : float
        Bounds on ``|median(measured - truth)|`` and its robust scatter, mag.
    max_astrometric_scatter_arcsec : float
        Bound on the robust per-coordinate position scatter, arcsec.
    min_completeness : float
        Bound on the matched fraction of truth stars to ``depth_mag``.
    """

    bright_mag: float = 21.0
    depth_mag: float = 23.0
    match_radius_arcsec: float = 1.0
    flux_column: str = "psf_flux"
    max_median_offset: float = 0.02
    max_scatter: float = 0.05
    max_astrometric_scatter_arcsec: float = 0.05
    min_completeness: float = 0.95


@dataclass
class Metric:
    """One line of the validation table."""

    band: str
    metric: str
    value: float
    bound: str
    unit: str
    n: int
    passed: bool

    def to_row(self) -> dict[str, Any]:
        """Plain-data row (for ``--json`` and the rich table)."""
        return {
            "band": self.band,
            "metric": self.metric,
            "value": None if not np.isfinite(self.value) else round(float(self.value), 4),
            "bound": self.bound,
            "unit": self.unit,
            "n": self.n,
            "result": "PASS" if self.passed else "FAIL",
        }


@dataclass
class ValidationReport:
    """All metrics plus the matched tables (for the figure).

    Attributes
    ----------
    metrics : list of Metric
    matches : dict
        Band -> table of matched stars: ``truth_mag``, ``mag``, ``dra_arcsec``,
        ``ddec_arcsec``, ``good`` (used for photometry).
    config : ValidationConfig
    truth_mags : dict
        Band -> magnitudes of every truth star in the processed area (matched or not;
        the denominator of completeness).
    """

    metrics: list[Metric]
    matches: dict[str, Table] = field(default_factory=dict)
    config: ValidationConfig = field(default_factory=ValidationConfig)
    truth_mags: dict[str, NDArray[np.float64]] = field(default_factory=dict)

    def metric(self, band: str, name: str) -> Metric | None:
        """The metric ``name`` of ``band``, if computed."""
        return next((m for m in self.metrics if m.band == band and m.metric == name), None)

    @property
    def passed(self) -> bool:
        """Whether every metric passed."""
        return all(m.passed for m in self.metrics)

    def rows(self) -> list[dict[str, Any]]:
        """Every metric as a plain row."""
        return [m.to_row() for m in self.metrics]


def robust_scatter(values: NDArray[np.floating]) -> float:
    """``1.4826 * median(|x - median(x)|)``: the sigma of a Gaussian, robust to outliers."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def match_to_truth(
    catalog: Table, truth: Table, radius_arcsec: float
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Match every truth object to at most one catalog object (nearest pairs first).

    Returns
    -------
    index : numpy.ndarray
        Per truth row, the matched catalog row or -1.
    separation : numpy.ndarray
        Per truth row, the separation in arcsec (NaN when unmatched).
    """
    n = len(truth)
    index = np.full(n, -1, dtype=np.int64)
    sep = np.full(n, np.nan)
    if n == 0 or len(catalog) == 0:
        return index, sep
    truth_c = SkyCoord(
        np.asarray(truth["ra"], float) * u.deg, np.asarray(truth["dec"], float) * u.deg
    )
    cat_c = SkyCoord(
        np.asarray(catalog["ra"], float) * u.deg, np.asarray(catalog["dec"], float) * u.deg
    )
    idx, d2d, _ = match_coordinates_sky(truth_c, cat_c)
    d = d2d.to_value(u.arcsec)
    taken: set[int] = set()
    for t in np.argsort(d):
        if d[t] > radius_arcsec or int(idx[t]) in taken:
            continue
        taken.add(int(idx[t]))
        index[t], sep[t] = int(idx[t]), float(d[t])
    return index, sep


def _good_rows(catalog: Table) -> NDArray[np.bool_]:
    good = np.ones(len(catalog), dtype=bool)
    for flag in QUALITY_FLAGS:
        if flag in catalog.colnames:
            good &= ~np.asarray(catalog[flag], dtype=bool)
    return good


def _band_matches(catalog: Table, truth: Table, band: str, cfg: ValidationConfig) -> Table:
    index, sep = match_to_truth(catalog, truth, cfg.match_radius_arcsec)
    ok = index >= 0
    rows = index[ok]
    out = Table()
    out["truth_id"] = np.asarray(truth["id"])[ok]
    out["truth_mag"] = np.asarray(truth[f"{band}_mag"], float)[ok]
    out["mag"] = njy_to_mag(np.asarray(catalog[cfg.flux_column], float)[rows])
    tra, tdec = np.asarray(truth["ra"], float)[ok], np.asarray(truth["dec"], float)[ok]
    cra, cdec = np.asarray(catalog["ra"], float)[rows], np.asarray(catalog["dec"], float)[rows]
    out["dra_arcsec"] = ((cra - tra + 180.0) % 360.0 - 180.0) * np.cos(np.radians(tdec)) * 3600.0
    out["ddec_arcsec"] = (cdec - tdec) * 3600.0
    out["separation_arcsec"] = sep[ok]
    out["good"] = _good_rows(catalog)[rows] & np.isfinite(np.asarray(out["mag"]))
    out.meta["N_TRUTH"] = len(truth)
    return out


def compute_metrics(
    catalogs: Mapping[str, Table],
    truth: Table,
    config: ValidationConfig | None = None,
    *,
    in_footprint: NDArray[np.bool_] | None = None,
) -> ValidationReport:
    """Per-band photometry, astrometry and completeness of measured catalogs vs truth.

    Parameters
    ----------
    catalogs : mapping of band -> Table
        Measured objects with ``ra``, ``dec`` (deg), ``config.flux_column`` (nJy) and
        optional quality flags (one row per object; e.g. ``deepCoadd_forced_src`` of
        every patch, primary rows only).
    truth : Table
        Truth catalog: ``id``, ``ra``, ``dec``, ``{band}_mag``, ``is_star``.
    config : ValidationConfig, optional
    in_footprint : numpy.ndarray, optional
        Per truth row, whether it lies in the processed area (default: all).

    Returns
    -------
    ValidationReport
        Per band: ``median_offset`` and ``scatter`` (stars brighter than ``bright_mag``,
        unflagged), ``astrometric_scatter`` (same stars, robust per-coordinate sigma) and
        ``completeness`` (stars brighter than ``depth_mag`` in the footprint).
    """
    cfg = config or ValidationConfig()
    stars = (
        np.asarray(truth["is_star"], dtype=bool)
        if "is_star" in truth.colnames
        else np.ones(len(truth), bool)
    )
    if in_footprint is not None:
        stars &= np.asarray(in_footprint, dtype=bool)
    star_truth = truth[stars]
    metrics: list[Metric] = []
    matches: dict[str, Table] = {}
    for band in sorted(catalogs, key=_band_order):
        m = _band_matches(catalogs[band], star_truth, band, cfg)
        matches[band] = m
        metrics.extend(_band_metrics(band, m, star_truth, cfg))
    truth_mags = {b: np.asarray(star_truth[f"{b}_mag"], float) for b in matches}
    return ValidationReport(metrics, matches, cfg, truth_mags)


def _band_metrics(band: str, m: Table, star_truth: Table, cfg: ValidationConfig) -> list[Metric]:
    bright = np.asarray(m["good"]) & (np.asarray(m["truth_mag"]) < cfg.bright_mag)
    resid = np.asarray(m["mag"])[bright] - np.asarray(m["truth_mag"])[bright]
    n_bright = int(bright.sum())
    median = float(np.median(resid)) if n_bright else float("nan")
    scatter = robust_scatter(resid)
    astro = float(
        np.sqrt(
            0.5
            * (
                robust_scatter(np.asarray(m["dra_arcsec"])[bright]) ** 2
                + robust_scatter(np.asarray(m["ddec_arcsec"])[bright]) ** 2
            )
        )
    )
    deep_truth = np.asarray(star_truth[f"{band}_mag"], float) < cfg.depth_mag
    n_deep = int(deep_truth.sum())
    deep_found = int(np.sum(np.asarray(m["truth_mag"]) < cfg.depth_mag))
    completeness = deep_found / n_deep if n_deep else float("nan")
    return [
        Metric(
            band,
            "median_offset",
            median,
            f"|x| < {cfg.max_median_offset}",
            "mag",
            n_bright,
            bool(np.isfinite(median) and abs(median) < cfg.max_median_offset),
        ),
        Metric(
            band,
            "scatter",
            scatter,
            f"< {cfg.max_scatter}",
            "mag",
            n_bright,
            bool(np.isfinite(scatter) and scatter < cfg.max_scatter),
        ),
        Metric(
            band,
            "astrometric_scatter",
            astro,
            f"< {cfg.max_astrometric_scatter_arcsec}",
            "arcsec",
            n_bright,
            bool(np.isfinite(astro) and astro < cfg.max_astrometric_scatter_arcsec),
        ),
        Metric(
            band,
            "completeness",
            completeness,
            f"> {cfg.min_completeness}",
            "fraction",
            n_deep,
            bool(np.isfinite(completeness) and completeness > cfg.min_completeness),
        ),
    ]


def _band_order(band: str) -> tuple[int, str]:
    order = "grizy"
    return (order.index(band) if band in order else len(order), band)
