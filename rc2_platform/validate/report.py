"""Gather a RUN's forced catalogs, validate them against truth, draw the figure.

:func:`primary_rows` keeps one copy of objects detected in the overlap of neighbouring
patches (those inside the patch's inner box, LSST's ``detect_isPrimary``);
:func:`in_patches` marks truth objects in the processed area; :func:`validate_run`
reads ``deepCoadd_forced_src`` of every patch and band of a RUN through the Butler.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table, vstack
from numpy.typing import NDArray

from rc2_platform.errors import Rc2Error
from rc2_platform.validate.metrics import ValidationConfig, ValidationReport, compute_metrics

FORCED_DATASET = "deepCoadd_forced_src"


class ValidationError(Rc2Error):
    """The inputs of a validation are missing or unusable (no catalogs, no truth)."""


def primary_rows(table: Table, patch: Any) -> NDArray[np.bool_]:
    """Rows whose pixel position (patch outer-box frame) lies in the patch's inner box."""
    x0, y0 = patch.pixel_origin
    inner = patch.inner_bbox
    x = np.asarray(table["x"], float) + x0
    y = np.asarray(table["y"], float) + y0
    return np.asarray(
        (x >= inner.x_min - 0.5)
        & (x < inner.x_max - 0.5)
        & (y >= inner.y_min - 0.5)
        & (y < inner.y_max - 0.5)
    )


def in_patches(truth: Table, patches: Sequence[Any]) -> NDArray[np.bool_]:
    """Whether each truth object falls in the inner box of one of ``patches``."""
    out = np.zeros(len(truth), dtype=bool)
    ra, dec = np.asarray(truth["ra"], float), np.asarray(truth["dec"], float)
    for patch in patches:
        x, y = patch.tract.wcs.world_to_pixel_values(ra, dec)
        b = patch.inner_bbox
        out |= (
            (x >= b.x_min - 0.5) & (x < b.x_max - 0.5) & (y >= b.y_min - 0.5) & (y < b.y_max - 0.5)
        )
    return out


def combine_patches(
    catalogs: Mapping[tuple[int, int, str], Table], sky_map: Any
) -> tuple[dict[str, Table], list[Any]]:
    """Stack per-(tract, patch, band) catalogs into one primary-only table per band.

    Returns the band tables and the patch infos seen.
    """
    by_band: dict[str, list[Table]] = {}
    patches: dict[tuple[int, int], Any] = {}
    for (tract, patch_id, band), table in sorted(catalogs.items()):
        patch = patches.setdefault((tract, patch_id), sky_map.tract(tract).patch(patch_id))
        keep = table[primary_rows(table, patch)]
        keep["tract"] = np.full(len(keep), tract, dtype=np.int64)
        keep["patch"] = np.full(len(keep), patch_id, dtype=np.int64)
        by_band.setdefault(band, []).append(keep)
    return (
        {b: vstack(ts, metadata_conflicts="silent") for b, ts in by_band.items()},
        list(patches.values()),
    )


def read_truth_file(path: str | Path) -> Table:
    """Read the truth catalog (HDU ``TRUTH`` if present, else the first table).

    Raises
    ------
    ValidationError
        If the file is missing or lacks ``ra``/``dec``/``is_star``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"truth catalog {path} does not exist; pass --truth FILE")
    try:
        truth = Table.read(path, hdu="TRUTH")
    except (KeyError, ValueError, IndexError):
        truth = Table.read(path)
    missing = [c for c in ("id", "ra", "dec") if c not in truth.colnames]
    if missing:
        raise ValidationError(f"truth catalog {path} lacks column(s) {missing}")
    return truth


def validate_catalogs(
    catalogs: Mapping[tuple[int, int, str], Table],
    truth: Table,
    sky_map: Any,
    config: ValidationConfig | None = None,
    *,
    star_depth5: Mapping[str, NDArray[np.float64]] | None = None,
) -> tuple[ValidationReport, list[Any]]:
    """Validate per-patch forced catalogs against the truth (primary rows, processed area).

    Completeness is measured to the depth derived from the catalogs' stated 5-sigma
    depths (:func:`band_medians` of ``DEPTH5``) unless ``config.depth_mag`` fixes it;
    stars blended with a neighbour within ``config.isolation_fwhm`` coadd PSF FWHM
    (``PSF_FWHM`` meta) are left out. Each star counts to its own depth: ``star_depth5``
    (e.g. :func:`~rc2_platform.validate.local_depth.local_depths`, the coadd's depth
    at the star) or else its patch's ``DEPTH5`` (:func:`star_depths`).
    """
    if not catalogs:
        raise ValidationError("no forced-photometry catalogs to validate")
    bands, patches = combine_patches(catalogs, sky_map)
    fwhm_px = band_medians(catalogs, "PSF_FWHM")
    scale = _pixel_scale_arcsec(patches)
    report = compute_metrics(
        bands,
        truth,
        config,
        in_footprint=in_patches(truth, patches),
        depth5=band_medians(catalogs, "DEPTH5"),
        psf_fwhm_arcsec={b: f * scale for b, f in fwhm_px.items()} if scale else None,
        star_depth5=star_depth5
        if star_depth5 is not None
        else star_depths(catalogs, truth, patches),
    )
    return report, patches


def star_depths(
    catalogs: Mapping[tuple[int, int, str], Table], truth: Table, patches: Sequence[Any]
) -> dict[str, NDArray[np.float64]]:
    """Per band and truth row, the ``DEPTH5`` of the patch whose inner box holds it (NaN
    outside the patches or where the catalog states none)."""
    from rc2_platform.validate.patch_maps import truth_patches

    where = truth_patches(truth, patches)
    out: dict[str, NDArray[np.float64]] = {}
    for (tract, patch_id, band), table in catalogs.items():
        depth = table.meta.get("DEPTH5")
        if depth is None or not np.isfinite(float(depth)):
            continue
        k = next(
            (
                i
                for i, p in enumerate(patches)
                if int(getattr(p.tract, "id", tract)) == tract and p.sequential_id == patch_id
            ),
            None,
        )
        if k is None:
            continue
        column = out.setdefault(band, np.full(len(truth), np.nan))
        column[where == k] = float(depth)
    return out


def band_medians(catalogs: Mapping[tuple[int, int, str], Table], key: str) -> dict[str, float]:
    """Per band, the median over patches of the catalogs' ``key`` meta (e.g. ``DEPTH5``,
    the coadd's 5-sigma depth written by forcedPhotCoadd, or ``PSF_FWHM``); bands
    without one are left out."""
    values: dict[str, list[float]] = {}
    for (_, _, band), table in catalogs.items():
        value = table.meta.get(key)
        if value is not None and np.isfinite(float(value)):
            values.setdefault(band, []).append(float(value))
    return {band: float(np.median(v)) for band, v in values.items()}


def _pixel_scale_arcsec(patches: Sequence[Any]) -> float | None:
    """Pixel scale of the patches' tract WCS (None if it has none)."""
    wcs = getattr(patches[0].tract, "wcs", None) if patches else None
    if wcs is None:
        return None
    return float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix)))) * 3600.0


def load_run_catalogs(butler: Any, run: str) -> tuple[dict[tuple[int, int, str], Table], Any]:
    """Read every ``deepCoadd_forced_src`` of ``run`` and the sky map they are on.

    Raises
    ------
    ValidationError
        If the RUN has no forced catalogs.
    """
    from rc2_platform.skymap import load_skymap
    from rc2_platform.tasks._helpers import resolve_skymap

    refs = butler.query_datasets(FORCED_DATASET, collections=[run])
    if not refs:
        raise ValidationError(
            f"RUN {run!r} has no {FORCED_DATASET} datasets; run the pipeline through "
            "forcedPhotCoadd first"
        )
    catalogs: dict[tuple[int, int, str], Table] = {}
    skymap_name = None
    for ref in refs:
        data_id = ref.data_id.to_dict()
        skymap_name = str(data_id["skymap"])
        catalogs[(int(data_id["tract"]), int(data_id["patch"]), str(data_id["band"]))] = butler.get(
            ref
        )
    assert skymap_name is not None
    try:
        sky_map = resolve_skymap(butler.get("skyMap", {"skymap": skymap_name}))
    except Exception:  # noqa: BLE001 - fall back to the shipped sky map config
        sky_map = load_skymap(skymap_name)
    return catalogs, sky_map


def validate_run(
    repo: str | Path,
    run: str,
    truth: str | Path,
    config: ValidationConfig | None = None,
    png: str | Path | None = None,
    patch_png: str | Path | None = None,
) -> ValidationReport:
    """Validate a RUN of a repository against a truth catalog file (and draw the figure).

    Unless ``config.depth_mag`` fixes the depth, each truth star counts to the depth of
    the coadd at its position (:func:`~rc2_platform.validate.local_depth.local_depths`).

    Parameters
    ----------
    repo : str or Path
        Repository folder.
    run : str
        RUN collection holding ``deepCoadd_forced_src``.
    truth : str or Path
        Truth catalog FITS file written by the simulator.
    config : ValidationConfig, optional
        Magnitude limits and bounds.
    png : str or Path, optional
        Where to write the residual/coverage figure.
    patch_png : str or Path, optional
        Where to write the per-patch maps of every metric and band
        (:func:`~rc2_platform.validate.patch_maps.write_patch_maps`).
    """
    from rc2_platform.butler import Butler
    from rc2_platform.validate.figure import write_figure

    truth_table = read_truth_file(truth)
    with Butler(repo) as butler:
        catalogs, sky_map = load_run_catalogs(butler, run)
        local = None
        if config is None or config.depth_mag is None:
            from rc2_platform.validate.local_depth import local_depths

            keys = sorted({(t, p) for t, p, _ in catalogs})
            patches = [sky_map.tract(t).patch(p) for t, p in keys]
            bands = sorted({b for _, _, b in catalogs})
            local = local_depths(butler, run, truth_table, patches, bands)
    report, patches = validate_catalogs(catalogs, truth_table, sky_map, config, star_depth5=local)
    if png is None and patch_png is None:
        return report
    from rc2_platform.validate.patch_maps import patch_metrics, write_patch_maps

    per_patch = patch_metrics(report, truth_table, patches)
    if png is not None:
        write_figure(report, patches, png, run=run, patch_table=per_patch)
    if patch_png is not None:
        write_patch_maps(per_patch, report.config, patch_png)
    return report
