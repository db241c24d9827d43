"""The validation figure: magnitude residuals per band and a coverage map of the tract."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rc2_platform.validate.metrics import ValidationReport


def write_figure(report: ValidationReport, patches: Sequence[Any], path: str | Path) -> Path:
    """Write a PNG: residual vs truth magnitude per band, and the tract's patch coverage.

    Parameters
    ----------
    report : ValidationReport
        Output of :func:`~rc2_platform.validate.compute_metrics` (its ``matches``).
    patches : sequence of PatchInfo
        The processed patches (their tract's other patches are drawn as outlines).
    path : str or Path
        PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bands = list(report.matches)
    ncols = max(len(bands), 1) + 1
    fig, axes = plt.subplots(1, ncols, figsize=(3.2 * ncols, 3.4), squeeze=False)
    cfg = report.config
    for ax, band in zip(axes[0], bands, strict=False):
        m = report.matches[band]
        good = np.asarray(m["good"], bool)
        tm, mag = np.asarray(m["truth_mag"], float), np.asarray(m["mag"], float)
        ax.scatter(tm[good], (mag - tm)[good], s=4, color="k", alpha=0.6)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.axvline(cfg.bright_mag, color="tab:red", lw=0.8, ls="--")
        ax.set_ylim(-0.3, 0.3)
        ax.set_xlabel(f"truth {band} (mag)")
        ax.set_title(f"band {band}")
    axes[0][0].set_ylabel("measured - truth (mag)")
    _coverage(axes[0][-1], report, patches)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _coverage(ax: Any, report: ValidationReport, patches: Sequence[Any]) -> None:
    done = {(p.tract.id if hasattr(p.tract, "id") else 0, p.sequential_id) for p in patches}
    tracts = {id(p.tract): p.tract for p in patches}
    for tract in tracts.values():
        for patch in tract.patches:
            b = patch.inner_bbox
            x = np.array([b.x_min, b.x_max, b.x_max, b.x_min, b.x_min], float) - 0.5
            y = np.array([b.y_min, b.y_min, b.y_max, b.y_max, b.y_min], float) - 0.5
            ra, dec = tract.wcs.pixel_to_world_values(x, y)
            key = (tract.id if hasattr(tract, "id") else 0, patch.sequential_id)
            if key in done:
                ax.fill(ra, dec, color="tab:blue", alpha=0.3)
                ax.text(
                    np.mean(ra[:4]),
                    np.mean(dec[:4]),
                    str(patch.sequential_id),
                    ha="center",
                    va="center",
                    fontsize=6,
                )
            else:
                ax.plot(ra, dec, color="grey", lw=0.3)
    ax.invert_xaxis()
    ax.set_xlabel("RA (deg)")
    ax.set_ylabel("Dec (deg)")
    ax.set_title("processed patches")
