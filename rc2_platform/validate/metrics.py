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
    depth_mag : float or None
        Completeness is measured for stars brighter than this (truth, per band).
        None (default): derived per band from the coadds' 5-sigma point-source depth
        ``m5`` (``DEPTH5`` of the forced catalogs) as the magnitude measured at
        ``completeness_snr``: ``m5 - 2.5 log10(completeness_snr / 5)``;
        :data:`FALLBACK_DEPTH_MAG` when no catalog states its depth.
    completeness_snr : float
        Signal-to-noise of the derived completeness depth (10: twice the 5-sigma
        detection threshold, so a star missed there is lost by the pipeline, not by the
        noise; at the 5-sigma depth itself half the stars fall below the threshold).
    isolation_fwhm, isolation_delta_mag : float
        Every metric uses *resolvable* stars only: a truth star with another truth
        object (star or galaxy) closer than ``isolation_fwhm`` coadd PSF FWHM and
        brighter than its own magnitude + ``isolation_delta_mag`` (a sixth of its flux
        for 2 mag) is a blend the detection cannot split (peaks closer than ~2 FWHM
        are one peak after the PSF smoothing) and is left out (counted as
        ``n_blended``). Needs the PSF FWHM in arcsec (``psf_fwhm_arcsec`` of
        :func:`compute_metrics`); 0 keeps every star.
    match_radius_arcsec : float
        Largest truth-to-measurement separation of a match; with the coadd PSF known,
        at least the radius holding 99 % of the positions of a star at the
        completeness depth (:func:`match_radius`).
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
    depth_mag: float | None = None
    completeness_snr: float = 10.0
    isolation_fwhm: float = 2.0
    isolation_delta_mag: float = 2.0
    match_radius_arcsec: float = 1.0
    flux_column: str = "psf_flux"
    max_median_offset: float = 0.02
    max_scatter: float = 0.05
    max_astrometric_scatter_arcsec: float = 0.05
    min_completeness: float = 0.95


#: Completeness depth (mag) when neither the configuration nor the catalogs state one.
FALLBACK_DEPTH_MAG = 23.0


def match_radius(config: ValidationConfig, psf_fwhm_arcsec: float | None) -> float:
    """The match radius (arcsec): ``config.match_radius_arcsec`` or, if larger, 3.03
    per-coordinate centroid errors of a point source at ``completeness_snr``
    (``sqrt(2) sigma_psf / snr``; 99 % of a 2-d Gaussian lies within 3.03 sigma).

    With 6.8" seeing (rc2-pixels) a star at S/N 10 has 0.41" per coordinate and 1"
    would lose 5 % of the stars at the depth to the match alone; tiny (3.4") keeps 1".
    """
    if psf_fwhm_arcsec is None or not np.isfinite(psf_fwhm_arcsec):
        return config.match_radius_arcsec
    sigma_psf = psf_fwhm_arcsec / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    centroid = np.sqrt(2.0) * sigma_psf / config.completeness_snr
    return float(max(config.match_radius_arcsec, np.sqrt(-2.0 * np.log(0.01)) * centroid))


def completeness_depth(depth5: float | None, config: ValidationConfig) -> float:
    """The magnitude completeness is measured to (see :class:`ValidationConfig`)."""
    if config.depth_mag is not None:
        return float(config.depth_mag)
    if depth5 is None or not np.isfinite(depth5):
        return FALLBACK_DEPTH_MAG
    return float(depth5 - 2.5 * np.log10(config.completeness_snr / 5.0))


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
    depth5 : dict
        Band -> the coadds' 5-sigma point-source depth (median over patches), when the
        catalogs state it.
    depths : dict
        Band -> the magnitude completeness was measured to (:func:`completeness_depth`).
    blended_ids : dict
        Band -> truth ids of the stars left out as unresolvable blends.
    isolation_arcsec : dict
        Band -> the neighbour radius of the isolation cut, arcsec.
    match_radius : dict
        Band -> the match radius used (:func:`match_radius`), arcsec.
    depth_range : dict
        Band -> (shallowest, deepest) completeness depth of the stars' patches.
    depth_by_id : dict
        Band -> (truth ids, completeness depth of each) of the stars the band uses.
    """

    metrics: list[Metric]
    matches: dict[str, Table] = field(default_factory=dict)
    config: ValidationConfig = field(default_factory=ValidationConfig)
    truth_mags: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    depth5: dict[str, float] = field(default_factory=dict)
    depths: dict[str, float] = field(default_factory=dict)
    blended_ids: dict[str, NDArray[np.int64]] = field(default_factory=dict)
    isolation_arcsec: dict[str, float] = field(default_factory=dict)
    match_radius: dict[str, float] = field(default_factory=dict)
    depth_range: dict[str, tuple[float, float]] = field(default_factory=dict)
    depth_by_id: dict[str, tuple[NDArray[np.int64], NDArray[np.float64]]] = field(
        default_factory=dict
    )

    def depth(self, band: str) -> float:
        """The completeness depth of ``band``."""
        return self.depths.get(band, completeness_depth(self.depth5.get(band), self.config))

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


def _band_matches(
    catalog: Table,
    truth: Table,
    band: str,
    cfg: ValidationConfig,
    radius: float,
    depth: NDArray[np.float64],
) -> Table:
    index, sep = match_to_truth(catalog, truth, radius)
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
    out["depth"] = np.asarray(depth, float)[ok]
    out["good"] = _good_rows(catalog)[rows] & np.isfinite(np.asarray(out["mag"]))
    out.meta["N_TRUTH"] = len(truth)
    return out


def compute_metrics(
    catalogs: Mapping[str, Table],
    truth: Table,
    config: ValidationConfig | None = None,
    *,
    in_footprint: NDArray[np.bool_] | None = None,
    depth5: Mapping[str, float] | None = None,
    psf_fwhm_arcsec: Mapping[str, float] | None = None,
    star_depth5: Mapping[str, NDArray[np.float64]] | None = None,
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
    depth5 : mapping of band -> float, optional
        The coadds' 5-sigma point-source depth per band (default: each catalog's
        ``DEPTH5`` meta), from which the completeness depth is derived.
    psf_fwhm_arcsec : mapping of band -> float, optional
        The coadds' PSF FWHM per band, for the isolation cut (none without it).
    star_depth5 : mapping of band -> numpy.ndarray, optional
        Per truth row, the 5-sigma depth of the coadd (patch) it lies on (NaN: unknown,
        the band's depth applies; -inf: no data there, not counted): each star counts to
        the completeness depth of its own patch, so shallow edge patches are held to
        their own depth.

    Returns
    -------
    ValidationReport
        Per band: ``median_offset`` and ``scatter`` (stars brighter than ``bright_mag``,
        unflagged), ``astrometric_scatter`` (same stars, robust per-coordinate sigma) and
        ``completeness`` (stars brighter than the completeness depth in the footprint).
    """
    cfg = config or ValidationConfig()
    stars = (
        np.asarray(truth["is_star"], dtype=bool)
        if "is_star" in truth.colnames
        else np.ones(len(truth), bool)
    )
    if in_footprint is not None:
        stars &= np.asarray(in_footprint, dtype=bool)
    report = ValidationReport([], {}, cfg)
    for band in sorted(catalogs, key=_band_order):
        m5 = (depth5 or {}).get(band, catalogs[band].meta.get("DEPTH5"))
        if m5 is not None and np.isfinite(float(m5)):
            report.depth5[band] = float(m5)
        depth = report.depths[band] = completeness_depth(report.depth5.get(band), cfg)
        row_depth = np.full(len(truth), depth)
        d5 = (star_depth5 or {}).get(band)
        if d5 is not None and cfg.depth_mag is None:
            known = ~np.isnan(d5)  # -inf: no data at the star, it is not counted
            row_depth[known] = d5[known] - 2.5 * np.log10(cfg.completeness_snr / 5.0)
        used = stars.copy()
        fwhm = (psf_fwhm_arcsec or {}).get(band)
        if fwhm is not None and np.isfinite(fwhm) and cfg.isolation_fwhm > 0:
            radius = report.isolation_arcsec[band] = cfg.isolation_fwhm * float(fwhm)
            blended = stars & has_bright_neighbour(truth, band, radius, cfg.isolation_delta_mag)
            report.blended_ids[band] = np.asarray(truth["id"])[blended]
            used &= ~blended
        band_truth = truth[used]
        band_depth = row_depth[used]
        finite = band_depth[np.isfinite(band_depth)]
        if len(finite):
            report.depth_range[band] = (float(finite.min()), float(finite.max()))
        report.depth_by_id[band] = (np.asarray(band_truth["id"]), band_depth)
        radius = report.match_radius[band] = match_radius(cfg, fwhm)
        m = _band_matches(catalogs[band], band_truth, band, cfg, radius, band_depth)
        report.matches[band] = m
        covered = band_depth > -np.inf  # stars with data (the completeness denominator)
        report.truth_mags[band] = np.asarray(band_truth[f"{band}_mag"], float)[covered]
        report.metrics.extend(
            _band_metrics(
                band,
                m,
                band_truth,
                cfg,
                band_depth,
                depth_bound(cfg, depth, report.depth5.get(band), report.depth_range.get(band)),
            )
        )
    return report


def has_bright_neighbour(
    truth: Table, band: str, radius_arcsec: float, delta_mag: float
) -> NDArray[np.bool_]:
    """Per truth row: another truth object lies within ``radius_arcsec`` and is brighter
    in ``band`` than the row's magnitude + ``delta_mag``."""
    out = np.zeros(len(truth), dtype=bool)
    if len(truth) < 2:
        return out
    coords = SkyCoord(
        np.asarray(truth["ra"], float) * u.deg, np.asarray(truth["dec"], float) * u.deg
    )
    first, second, _, _ = coords.search_around_sky(coords, radius_arcsec * u.arcsec)
    mag = np.asarray(truth[f"{band}_mag"], float)
    pair = (first != second) & (mag[second] < mag[first] + delta_mag)
    out[first[pair]] = True
    return out


def depth_bound(
    cfg: ValidationConfig,
    depth: float,
    depth5: float | None,
    depth_range: tuple[float, float] | None = None,
) -> str:
    """The completeness bound as stated: fraction, depth and where the depth comes from."""
    text = f"> {cfg.min_completeness} to {depth:.2f} mag"
    if cfg.depth_mag is None and depth5 is not None:
        text += f" (S/N {cfg.completeness_snr:g}; 5-sigma depth {depth5:.2f}"
        if depth_range is not None and depth_range[1] - depth_range[0] >= 0.005:
            text += f"; local {depth_range[0]:.2f}-{depth_range[1]:.2f}"
        text += ")"
    return text


def _band_metrics(
    band: str,
    m: Table,
    star_truth: Table,
    cfg: ValidationConfig,
    depth: NDArray[np.float64],
    bound: str,
) -> list[Metric]:
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
    deep_truth = np.asarray(star_truth[f"{band}_mag"], float) < depth
    n_deep = int(deep_truth.sum())
    deep_found = int(np.sum(np.asarray(m["truth_mag"]) < np.asarray(m["depth"], float)))
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
            bound,
            "fraction",
            n_deep,
            bool(np.isfinite(completeness) and completeness > cfg.min_completeness),
        ),
    ]


def _band_order(band: str) -> tuple[int, str]:
    order = "grizy"
    return (order.index(band) if band in order else len(order), band)
