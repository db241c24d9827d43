"""Validation metrics per patch, and their maps over the tract (one panel per metric and band).

:func:`patch_metrics` splits the matches of a :class:`ValidationReport` by the patch of
each truth star and computes the same four metrics per (patch, band);
:func:`write_patch_maps` draws them as tract-sized grids, each patch coloured by its value
and crossed where it fails the bound. With a whole tract (81 patches x 5 bands) the maps
show where a metric goes wrong (an edge, a corner with few visits) that the tract-wide
numbers hide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from numpy.typing import NDArray

from rc2_platform.validate.metrics import ValidationConfig, ValidationReport, robust_scatter

#: The metrics of a patch, in panel order: (name, unit).
PATCH_METRICS = (
    ("median_offset", "mag"),
    ("scatter", "mag"),
    ("astrometric_scatter", "arcsec"),
    ("completeness", "fraction"),
)

#: Fewest stars for a per-patch photometric or astrometric statistic.
MIN_STARS = 5


@dataclass(frozen=True)
class PatchKey:
    """A patch of a tract (the grid position locates it on the map)."""

    tract: int
    patch: int
    x: int
    y: int


def truth_patches(truth: Table, patches: Sequence[Any]) -> NDArray[np.int64]:
    """Index into ``patches`` of the patch whose inner box holds each truth row (-1: none)."""
    out = np.full(len(truth), -1, dtype=np.int64)
    ra, dec = np.asarray(truth["ra"], float), np.asarray(truth["dec"], float)
    for k, patch in enumerate(patches):
        x, y = patch.tract.wcs.world_to_pixel_values(ra, dec)
        b = patch.inner_bbox
        inside = (
            (x >= b.x_min - 0.5) & (x < b.x_max - 0.5) & (y >= b.y_min - 0.5) & (y < b.y_max - 0.5)
        )
        out[inside & (out < 0)] = k
    return out


def patch_metrics(report: ValidationReport, truth: Table, patches: Sequence[Any]) -> Table:
    """One row per (patch, band) with the four metrics, their star counts and PASS flags.

    Parameters
    ----------
    report : ValidationReport
        Output of :func:`~rc2_platform.validate.compute_metrics` (its ``matches`` carry
        ``truth_id``).
    truth : Table
        The truth catalog the report was computed against.
    patches : sequence of PatchInfo
        The processed patches.

    Returns
    -------
    astropy.table.Table
        Columns ``tract``, ``patch``, ``x``, ``y`` (patch grid index), ``band``, then per
        metric its value, ``n_<metric>`` and ``pass_<metric>`` (statistics with fewer than
        :data:`MIN_STARS` stars are NaN and pass).
    """
    cfg = report.config
    stars = np.asarray(truth["is_star"], bool) if "is_star" in truth.colnames else None
    star_truth = truth[stars] if stars is not None else truth
    where = truth_patches(star_truth, patches)
    row_of_id = {int(i): k for k, i in enumerate(np.asarray(star_truth["id"]))}
    rows: list[dict[str, Any]] = []
    for band, matches in report.matches.items():
        matched_patch = np.array(
            [where[row_of_id[int(i)]] for i in np.asarray(matches["truth_id"])], dtype=np.int64
        )
        deep = np.asarray(star_truth[f"{band}_mag"], float) < report.depth(band)
        if band in report.depth_by_id:  # each star to its patch's depth; blends left out
            ids, depths = report.depth_by_id[band]
            of_id = dict(zip(np.asarray(ids).tolist(), np.asarray(depths).tolist(), strict=True))
            star_depth = np.array(
                [of_id.get(int(i), np.nan) for i in np.asarray(star_truth["id"])], dtype=float
            )
            deep = np.asarray(star_truth[f"{band}_mag"], float) < star_depth
        for k, patch in enumerate(patches):
            m = matches[matched_patch == k]
            n_deep = int(np.sum(deep & (where == k)))
            rows.append(_patch_row(patch, band, m, n_deep, cfg, report.depth(band)))
    return Table(rows=rows) if rows else Table()


def _patch_row(
    patch: Any, band: str, m: Table, n_deep: int, cfg: ValidationConfig, depth: float
) -> dict[str, Any]:
    bright = np.asarray(m["good"], bool) & (np.asarray(m["truth_mag"], float) < cfg.bright_mag)
    n = int(bright.sum())
    resid = np.asarray(m["mag"], float)[bright] - np.asarray(m["truth_mag"], float)[bright]
    enough = n >= MIN_STARS
    median = float(np.median(resid)) if enough else float("nan")
    scatter = robust_scatter(resid) if enough else float("nan")
    astro = (
        float(
            np.sqrt(
                0.5
                * (
                    robust_scatter(np.asarray(m["dra_arcsec"])[bright]) ** 2
                    + robust_scatter(np.asarray(m["ddec_arcsec"])[bright]) ** 2
                )
            )
        )
        if enough
        else float("nan")
    )
    limit = np.asarray(m["depth"], float) if "depth" in m.colnames else depth
    found = int(np.sum(np.asarray(m["truth_mag"], float) < limit))
    completeness = found / n_deep if n_deep else float("nan")
    x, y = patch.index if hasattr(patch, "index") else (0, 0)
    return {
        "tract": int(patch.tract.id),
        "patch": int(patch.sequential_id),
        "x": int(x),
        "y": int(y),
        "band": band,
        "median_offset": median,
        "n_median_offset": n,
        "pass_median_offset": bool(not enough or abs(median) < cfg.max_median_offset),
        "scatter": scatter,
        "n_scatter": n,
        "pass_scatter": bool(not enough or scatter < cfg.max_scatter),
        "astrometric_scatter": astro,
        "n_astrometric_scatter": n,
        "pass_astrometric_scatter": bool(not enough or astro < cfg.max_astrometric_scatter_arcsec),
        "completeness": completeness,
        "n_completeness": n_deep,
        "pass_completeness": bool(not n_deep or completeness > cfg.min_completeness),
    }


def _limits(name: str, cfg: ValidationConfig) -> tuple[str, float, float, float]:
    """(colormap, vmin, vmax, bound) of a metric's panels: the bound sits at 2/3 of the scale."""
    if name == "median_offset":
        return (
            "RdBu_r",
            -1.5 * cfg.max_median_offset,
            1.5 * cfg.max_median_offset,
            (cfg.max_median_offset),
        )
    if name == "scatter":
        return "viridis", 0.0, 1.5 * cfg.max_scatter, cfg.max_scatter
    if name == "astrometric_scatter":
        bound = cfg.max_astrometric_scatter_arcsec
        return "viridis", 0.0, 1.5 * bound, bound
    lo = 1.0 - 1.5 * (1.0 - cfg.min_completeness)
    return "viridis_r", lo, 1.0, cfg.min_completeness


def write_patch_maps(table: Table, config: ValidationConfig, path: str | Path) -> Path:
    """Draw per-patch maps: rows = metrics, columns = bands, one cell per patch.

    Cells are coloured by the value (colour bar per metric, the bound marked on it), grey
    where there are too few stars, and crossed where the patch fails the bound. The
    patch grid is drawn as on the sky with east to the left (patch x to the right, y up).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bands = [b for b in "grizy" if b in set(table["band"])] or sorted(set(table["band"]))
    # The map spans the processed patches (a whole tract: its 9 x 9 grid).
    x0 = int(np.min(table["x"])) if len(table) else 0
    y0 = int(np.min(table["y"])) if len(table) else 0
    nx = int(np.max(table["x"])) - x0 + 1 if len(table) else 1
    ny = int(np.max(table["y"])) - y0 + 1 if len(table) else 1
    fig, axes = plt.subplots(
        len(PATCH_METRICS),
        len(bands) + 1,
        figsize=(2.3 * len(bands) + 0.9, 2.3 * len(PATCH_METRICS)),
        squeeze=False,
        gridspec_kw={"width_ratios": [1.0] * len(bands) + [0.08]},
    )
    for row, (name, unit) in enumerate(PATCH_METRICS):
        cmap, vmin, vmax, bound = _limits(name, config)
        image = None
        for col, band in enumerate(bands):
            ax = axes[row][col]
            sel = table[np.asarray(table["band"]) == band]
            grid = np.full((ny, nx), np.nan)
            gx, gy = np.asarray(sel["x"], int) - x0, np.asarray(sel["y"], int) - y0
            grid[gy, gx] = np.asarray(sel[name])
            ax.set_facecolor("0.85")
            image = ax.imshow(
                grid, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest"
            )
            bad = ~np.asarray(sel[f"pass_{name}"], bool)
            ax.plot(gx[bad], gy[bad], "x", color="red", ms=7, mew=2)
            ax.set_xticks([])
            ax.set_yticks([])
            n_fail = int(bad.sum())
            ax.set_title(f"{band}: {n_fail} failing" if n_fail else f"{band}", fontsize=9)
            if col == 0:
                ax.set_ylabel(f"{name}\n({unit})", fontsize=9)
        cax = axes[row][-1]
        if image is not None:
            bar = fig.colorbar(image, cax=cax)
            for level in (bound, -bound) if name == "median_offset" else (bound,):
                bar.ax.axhline(level, color="red", lw=1.5)
            bar.ax.tick_params(labelsize=7)
    tract_ids = sorted({int(t) for t in table["tract"]}) if len(table) else []
    fig.suptitle(
        f"validation per patch, tract {', '.join(map(str, tract_ids))} "
        "(red x: fails the bound; grey: too few stars)",
        fontsize=10,
    )
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def worst_band_grid(
    table: Table, name: str
) -> tuple[NDArray[np.float64], NDArray[np.bool_], int, int]:
    """Per patch (grid ``[y, x]`` over the processed patches), the worst value of metric
    ``name`` over the bands (largest ``|offset|``, scatter; smallest completeness) and
    whether any band fails its bound; plus the grid's origin ``(x0, y0)``."""
    x0, y0 = int(np.min(table["x"])), int(np.min(table["y"]))
    nx, ny = int(np.max(table["x"])) - x0 + 1, int(np.max(table["y"])) - y0 + 1
    value = np.full((ny, nx), np.nan)
    failed = np.zeros((ny, nx), dtype=bool)
    for row in table:
        gx, gy, v = int(row["x"]) - x0, int(row["y"]) - y0, float(row[name])
        failed[gy, gx] |= not bool(row[f"pass_{name}"])
        if not np.isfinite(v):
            continue
        old = value[gy, gx]
        if name == "completeness":
            worse = not np.isfinite(old) or v < old
        elif name == "median_offset":
            worse = not np.isfinite(old) or abs(v) > abs(old)
        else:
            worse = not np.isfinite(old) or v > old
        if worse:
            value[gy, gx] = v
    return value, failed, x0, y0


def draw_worst_band_maps(axes: Sequence[Any], table: Table, config: ValidationConfig) -> None:
    """One map per metric (:data:`PATCH_METRICS`, one axes each) of the worst band per
    patch, failing patches crossed, a colour bar with the bound in red (the validation
    figure's bottom row; per band: :func:`write_patch_maps`)."""
    import matplotlib.pyplot as plt

    for ax, (name, unit) in zip(axes, PATCH_METRICS, strict=True):
        cmap, vmin, vmax, bound = _limits(name, config)
        ax.set_xticks([])
        ax.set_yticks([])
        if not len(table):
            ax.set_title(f"{name}: no patch", fontsize=9)
            continue
        value, failed, _, _ = worst_band_grid(table, name)
        ax.set_facecolor("0.85")
        image = ax.imshow(
            value, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest"
        )
        fy, fx = np.nonzero(failed)
        ax.plot(fx, fy, "x", color="red", ms=7, mew=2)
        n_fail = int(failed.sum())
        n_all = len({(int(x), int(y)) for x, y in zip(table["x"], table["y"], strict=True)})
        ax.set_title(
            f"per patch: {name.replace('_', ' ')} ({unit}), worst band\n"
            f"{n_fail} of {n_all} patches fail (red x; grey: too few stars)",
            fontsize=9,
            color="#c62828" if n_fail else "#1a7f37",
        )
        bar = plt.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
        for level in (bound, -bound) if name == "median_offset" else (bound,):
            bar.ax.axhline(level, color="red", lw=1.5)
        bar.ax.tick_params(labelsize=7)
