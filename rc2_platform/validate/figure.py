"""The validation figure: one column per band, a coverage map, every cut and verdict on it.

Rows: photometric residual vs truth magnitude, astrometric residual vs truth magnitude,
completeness vs truth magnitude. Each panel draws its cut as a labelled line, states its
metric values with the bound and PASS/FAIL above the plot, and counts the points outside its plotted
range (drawn as triangles on the edge). Stars brighter than the cut (black / full
colour) are the ones the metrics use; fainter ones are shown lighter. The right column maps the tract's patches with
the processed ones filled and labelled. The title names the RUN, the tract(s) and how
many metrics passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from numpy.typing import NDArray

from rc2_platform.validate.metrics import Metric, ValidationReport

#: Plotted ranges: magnitude residual (mag) and position residual (arcsec).
PHOT_RANGE = 0.3
ASTRO_RANGE = 0.3
PASS_COLOUR, FAIL_COLOUR = "#1a7f37", "#c62828"


def write_figure(
    report: ValidationReport,
    patches: Sequence[Any],
    path: str | Path,
    *,
    run: str | None = None,
    patch_table: Table | None = None,
) -> Path:
    """Write the validation PNG.

    Parameters
    ----------
    report : ValidationReport
        Output of :func:`~rc2_platform.validate.compute_metrics`.
    patches : sequence of PatchInfo
        The processed patches (their tract's other patches are drawn as outlines).
    path : str or Path
        PNG file to write.
    run : str, optional
        The RUN validated, for the title.
    patch_table : astropy.table.Table, optional
        Per-patch metrics (:func:`~rc2_platform.validate.patch_maps.patch_metrics`):
        adds a row of per-patch maps of each metric (worst band).
    """
    import matplotlib.pyplot as plt

    fig = make_figure(report, patches, run=run, patch_table=patch_table)
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def make_figure(
    report: ValidationReport,
    patches: Sequence[Any],
    *,
    run: str | None = None,
    patch_table: Table | None = None,
) -> Any:
    """The validation figure as a matplotlib ``Figure`` (see :func:`write_figure`).

    With ``patch_table`` (:func:`~rc2_platform.validate.patch_maps.patch_metrics`) a
    bottom row maps each metric per patch (worst band).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bands = list(report.matches)
    ncols = max(len(bands), 1)
    rows = 3 if patch_table is None else 4
    fig = plt.figure(figsize=(3.9 * ncols + 6.5, 11.0 * rows / 3), layout="constrained")
    grid = fig.add_gridspec(rows, ncols + 1, width_ratios=[1.0] * ncols + [1.6])
    if patch_table is not None:
        from rc2_platform.validate.patch_maps import PATCH_METRICS, draw_worst_band_maps

        sub = grid[3, :].subgridspec(1, len(PATCH_METRICS))
        axes = [fig.add_subplot(sub[0, k]) for k in range(len(PATCH_METRICS))]
        draw_worst_band_maps(axes, patch_table, report.config)
    for col, band in enumerate(bands):
        _photometry(fig.add_subplot(grid[0, col]), report, band)
        _astrometry(fig.add_subplot(grid[1, col]), report, band)
        _completeness(fig.add_subplot(grid[2, col]), report, band)
    _coverage(fig.add_subplot(grid[0:2, ncols]), patches)
    _summary_table(fig.add_subplot(grid[2, ncols]), report)
    fig.suptitle(_title(report, patches, run), fontsize=14, fontweight="bold")
    return fig


def _title(report: ValidationReport, patches: Sequence[Any], run: str | None) -> str:
    tracts = sorted({int(getattr(p.tract, "id", 0)) for p in patches})
    where = f"tract {', '.join(str(t) for t in tracts)}" if tracts else "no patches"
    passed = sum(m.passed for m in report.metrics)
    verdict = "PASS" if report.passed else "FAIL"
    head = f"Validation of RUN {run}" if run else "Validation"
    return (
        f"{head}, {where}: {verdict} ({passed} of {len(report.metrics)} metrics pass)\n"
        "measured deepCoadd_forced_src against the truth catalog"
    )


def _verdict(metric: Metric | None, label: str, fmt: str, unit: str = "") -> str:
    """``label value (bound) PASS`` for one metric."""
    if metric is None:
        return f"{label} not measured"
    value = "n/a" if not np.isfinite(metric.value) else format(metric.value, fmt)
    return f"{label} {value}{unit} ({metric.bound}) {'PASS' if metric.passed else 'FAIL'}"


def _header(
    ax: Any,
    band: str,
    what: str,
    lines: list[str],
    metrics: Sequence[Metric | None],
    n: int,
    outside: str | None = None,
) -> None:
    """Panel title: band, quantity and PASS/FAIL; the metric values; points off the plot."""
    ok = all(m is not None and m.passed for m in metrics)
    text = f"{band} {what}: {'PASS' if ok else 'FAIL'}\n" + "\n".join(lines) + f"  (n = {n})"
    if outside:
        text += f"\n{outside}"
    ax.set_title(text, fontsize=9.5, color=PASS_COLOUR if ok else FAIL_COLOUR, fontweight="bold")


def _cut(ax: Any, mag: float, text: str, color: str = "tab:red", y: float = 0.98) -> None:
    """A vertical cut at ``mag``, labelled at its top (or at height ``y``)."""
    ax.axvline(mag, color=color, lw=1.0, ls="--")
    low, high = ax.get_xlim()
    right_half = (mag - low) / ((high - low) or 1.0) > 0.6  # label on the side with room
    ax.text(mag, y, f" {text} " , transform=ax.get_xaxis_transform(), color=color,
            fontsize=7.5, ha="right" if right_half else "left", va="top",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.75, "pad": 0.5})  # fmt: skip


def _clipped_scatter(
    ax: Any, x: NDArray[np.float64], y: NDArray[np.float64], limit: float, **style: Any
) -> tuple[int, int]:
    """Scatter ``y`` vs ``x`` within ±limit; points beyond become edge triangles (counted)."""
    inside = np.abs(y) <= limit
    ax.scatter(x[inside], y[inside], **style)
    above, below = y > limit, y < -limit
    edge = {"s": 22, "color": style.get("color", "k"), "clip_on": False, "zorder": 3}
    ax.scatter(x[above], np.full(int(above.sum()), limit * 0.97), marker="^", **edge)
    ax.scatter(x[below], np.full(int(below.sum()), -limit * 0.97), marker="v", **edge)
    ax.set_ylim(-limit, limit)
    return int(above.sum()), int(below.sum())


def _outside(limit: float, unit: str, above: int, below: int) -> str:
    return f"▲▼ beyond ±{limit:g}{unit}: {above} above, {below} below"


def _photometry(ax: Any, report: ValidationReport, band: str) -> None:
    m, cfg = report.matches[band], report.config
    good = np.asarray(m["good"], bool)
    truth = np.asarray(m["truth_mag"], float)
    tm, resid = truth[good], (np.asarray(m["mag"], float) - truth)[good]
    bright = tm < cfg.bright_mag
    ax.axhspan(-cfg.max_median_offset, cfg.max_median_offset, color="tab:green", alpha=0.15,
               label=f"|median| bound ±{cfg.max_median_offset:g}")  # fmt: skip
    ax.axhline(0.0, color="0.5", lw=0.8)
    faint = _clipped_scatter(ax, tm[~bright], resid[~bright], PHOT_RANGE, s=5, color="0.65",
                             label="fainter (shown only)")  # fmt: skip
    used = _clipped_scatter(ax, tm[bright], resid[bright], PHOT_RANGE, s=10, color="k",
                            label="measured stars")  # fmt: skip
    _cut(ax, cfg.bright_mag, f"bright cut {cfg.bright_mag:g} mag")
    median, scatter = report.metric(band, "median_offset"), report.metric(band, "scatter")
    lines = [_verdict(median, "median", "+.4f"), _verdict(scatter, "scatter", ".4f")]
    outside = _outside(PHOT_RANGE, " mag", faint[0] + used[0], faint[1] + used[1])
    _header(ax, band, "photometry", lines, [median, scatter], median.n if median else 0, outside)
    ax.legend(loc="lower left", fontsize=7, markerscale=1.2, framealpha=0.8)
    ax.set_xlabel(f"truth {band} (mag)")
    ax.set_ylabel("measured − truth (mag)")


def _astrometry(ax: Any, report: ValidationReport, band: str) -> None:
    m, cfg = report.matches[band], report.config
    good = np.asarray(m["good"], bool)
    tm = np.asarray(m["truth_mag"], float)[good]
    bright = tm < cfg.bright_mag
    ax.axhline(0.0, color="0.5", lw=0.8)
    above = below = 0
    for col, colour, label in (("dra_arcsec", "tab:blue", "ΔRA cos δ"),
                               ("ddec_arcsec", "tab:orange", "ΔDec")):  # fmt: skip
        d = np.asarray(m[col], float)[good]
        up1, down1 = _clipped_scatter(ax, tm[bright], d[bright], ASTRO_RANGE, s=10,
                                      color=colour, label=f"{label} (measured stars)")  # fmt: skip
        up2, down2 = _clipped_scatter(ax, tm[~bright], d[~bright], ASTRO_RANGE, s=4,
                                      color=colour, alpha=0.25)  # fmt: skip
        above, below = above + up1 + up2, below + down1 + down2
    _cut(ax, cfg.bright_mag, f"bright cut {cfg.bright_mag:g} mag")
    astro = report.metric(band, "astrometric_scatter")
    lines = [_verdict(astro, "scatter", ".4f", "″")]
    outside = _outside(ASTRO_RANGE, "″", above, below)
    _header(ax, band, "astrometry", lines, [astro], astro.n if astro else 0, outside)
    ax.legend(loc="lower left", fontsize=7, markerscale=1.2, framealpha=0.8)
    ax.set_xlabel(f"truth {band} (mag)")
    ax.set_ylabel("measured − truth (arcsec)")


def _completeness(ax: Any, report: ValidationReport, band: str) -> None:
    cfg = report.config
    truth = report.truth_mags.get(band, np.array([]))
    matches = report.matches[band]
    found = np.asarray(matches["truth_mag"], float)
    if "depth" in matches.colnames:  # stars on no data are not in the denominator
        found = found[np.asarray(matches["depth"], float) > -np.inf]
    if len(truth):
        edges = np.arange(np.floor(truth.min() * 2) / 2, np.ceil(truth.max() * 2) / 2 + 0.5, 0.5)
        n_truth, _ = np.histogram(truth, edges)
        n_found, _ = np.histogram(found, edges)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(n_truth > 0, n_found / np.maximum(n_truth, 1), np.nan)
        centres = 0.5 * (edges[:-1] + edges[1:])
        ax.step(centres, frac, where="mid", color="k", lw=1.3)
        ax.scatter(centres, frac, s=10, color="k")
    ax.axhline(cfg.min_completeness, color="tab:green", ls=":", lw=1.0)
    ax.text(0.03, cfg.min_completeness - 0.02, f"bound > {cfg.min_completeness:g}",
            transform=ax.get_yaxis_transform(), color="tab:green", fontsize=7.5, va="top")  # fmt: skip
    depth = report.depth(band)
    m5 = report.depth5.get(band)
    comp = report.metric(band, "completeness")
    value = "n/a" if comp is None or not np.isfinite(comp.value) else f"{comp.value:.3f}"
    verdict = "" if comp is None else ("PASS" if comp.passed else "FAIL")
    lines = [f"to {depth:.2f} mag {value} (> {cfg.min_completeness:g}) {verdict}"]
    if m5 is not None and cfg.depth_mag is None:
        _cut(ax, m5, f"5σ depth {m5:.2f}", color="tab:purple", y=0.14)
        _cut(ax, depth, f"depth {depth:.2f} (S/N {cfg.completeness_snr:g})")
        lines.append(f"depth = coadd 5σ depth {m5:.2f} − {m5 - depth:.2f}")
    else:
        _cut(ax, depth, f"depth {depth:g} mag")
    if band in report.blended_ids:
        radius = report.isolation_arcsec.get(band, float("nan"))
        lines.append(f"{len(report.blended_ids[band])} blends (< {radius:.1f}″) left out")
    _header(ax, band, "completeness", lines, [comp], comp.n if comp else 0)
    finite = frac[np.isfinite(frac)] if len(truth) else np.array([1.0])
    ax.set_ylim(min(0.8, float(finite.min()) - 0.05) if len(finite) else 0.8, 1.03)
    ax.set_xlabel(f"truth {band} (mag), 0.5 mag bins")
    ax.set_ylabel("matched fraction of truth stars")


def _coverage(ax: Any, patches: Sequence[Any]) -> None:
    done = {(int(getattr(p.tract, "id", 0)), p.sequential_id) for p in patches}
    tracts = {id(p.tract): p.tract for p in patches}
    for tract in tracts.values():
        tid = int(getattr(tract, "id", 0))
        for patch in tract.patches:
            b = patch.inner_bbox
            x = np.array([b.x_min, b.x_max, b.x_max, b.x_min, b.x_min], float) - 0.5
            y = np.array([b.y_min, b.y_min, b.y_max, b.y_max, b.y_min], float) - 0.5
            ra, dec = tract.wcs.pixel_to_world_values(x, y)
            if (tid, patch.sequential_id) in done:
                ax.fill(ra, dec, color="tab:blue", alpha=0.35)
                ax.text(np.mean(ra[:4]), np.mean(dec[:4]), str(patch.sequential_id),
                        ha="center", va="center", fontsize=10, fontweight="bold")  # fmt: skip
            else:
                ax.plot(ra, dec, color="0.6", lw=0.4)
    from matplotlib.ticker import MaxNLocator

    ax.invert_xaxis()
    ax.set_aspect("equal", adjustable="datalim")
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.set_xlabel("RA (deg)")
    ax.set_ylabel("Dec (deg)")
    n_all = sum(len(t.patches) for t in tracts.values())
    names = ", ".join(str(int(getattr(t, "id", 0))) for t in tracts.values())
    ax.set_title(f"sky coverage of tract {names}\n{len(done)} of {n_all} patches processed "
                 "(filled, numbered)",
                 fontsize=11)  # fmt: skip


def _summary_table(ax: Any, report: ValidationReport) -> None:
    """Every metric of every band in one grid, PASS cells green and FAIL cells red."""
    ax.axis("off")
    names = list(dict.fromkeys(m.metric for m in report.metrics))
    bands = list(dict.fromkeys(m.band for m in report.metrics))
    cells, colours = [], []
    for band in bands:
        row, row_colours = [band], ["white"]
        for name in names:
            m = report.metric(band, name)
            ok = m is not None and m.passed
            fmt = (
                "+.4f"
                if name == "median_offset"
                else ".3f"
                if m and m.unit == "fraction"
                else ".4f"
            )
            row.append("—" if m is None or not np.isfinite(m.value) else format(m.value, fmt))
            row_colours.append("#d7f0dc" if ok else "#f8d3d3")
        m5 = report.depth5.get(band)
        row.append(f"{report.depth(band):.2f}" + (f" ({m5:.2f})" if m5 is not None else ""))
        row_colours.append("white")
        cells.append(row)
        colours.append(row_colours)
    first = {n: report.metric(bands[0], n) for n in names} if bands else {}
    cfg = report.config
    bounds = {"completeness": f"> {cfg.min_completeness:g}"}
    headers = ["band"] + [
        f"{n.replace('_', chr(10))}\n{bounds.get(n, m.bound)} {m.unit}"
        if (m := first.get(n))
        else n
        for n in names
    ]
    headers.append("depth\n(5σ depth)\nmag")
    table = ax.table(cellText=cells, cellColours=colours, colLabels=headers, cellLoc="center",
                     bbox=[0.0, 0.1, 1.0, 0.85])  # fmt: skip
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    for (row, _), cell in table.get_celld().items():
        if row == 0:  # three-line headers: name, bound, unit
            cell.set_height(cell.get_height() * 2.6)
    ax.set_title("every metric: green PASS, red FAIL", fontsize=10)
