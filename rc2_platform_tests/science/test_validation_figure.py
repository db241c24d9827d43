"""The validation figure explains itself: verdicts, values, cuts, off-plot counts, title."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.table import Table

from rc2_platform.tasks.algorithms import mag_to_njy
from rc2_platform.validate import validate_catalogs
from rc2_platform.validate.figure import make_figure, write_figure


def _patch_catalog(residuals: np.ndarray, mags: np.ndarray) -> tuple[dict, Table, object]:
    """Stars in patch 40 of tract 9813 (tiny sky map) measured with the given residuals."""
    from rc2_platform.skymap import load_skymap

    sky_map = load_skymap("hsc_rings_v1_tiny")
    patch = sky_map.tract(9813).patch(40)
    x0, y0 = patch.pixel_origin
    n = len(mags)
    rng = np.random.default_rng(3)
    box = patch.inner_bbox
    xs = rng.uniform(box.x_min + 20, box.x_max - 20, n) - x0
    ys = rng.uniform(box.y_min + 20, box.y_max - 20, n) - y0
    ra, dec = patch.wcs.pixel_to_world_values(xs, ys)
    cat = Table({"x": xs, "y": ys, "ra": ra, "dec": dec, "psf_flux": mag_to_njy(mags + residuals)})
    truth = Table({"id": np.arange(n), "ra": ra, "dec": dec, "i_mag": mags,
                   "is_star": np.ones(n, bool)})  # fmt: skip
    return {(9813, 40, "i"): cat}, truth, sky_map


def _texts(fig: object) -> list[str]:
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text)]  # type: ignore[attr-defined]


def test_panels_state_values_verdicts_cuts_and_points_off_the_plot(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    mags = rng.uniform(18.0, 22.5, 60)
    residuals = rng.normal(0.0, 0.005, 60)
    residuals[:3], residuals[3] = 0.5, -0.4  # three above the plotted +-0.3, one below
    catalogs, truth, sky_map = _patch_catalog(residuals, mags)
    report, patches = validate_catalogs(catalogs, truth, sky_map)
    fig = make_figure(report, patches, run="u/test/figure")
    photometry, astrometry, completeness = fig.axes[:3]
    title = photometry.get_title()
    assert title.startswith("i photometry: ")
    median = report.metric("i", "median_offset")
    assert median is not None and f"median {median.value:+.4f} (|x| < 0.02)" in title
    assert "beyond ±0.3 mag: 3 above, 1 below" in title
    assert "astrometry" in astrometry.get_title() and "″" in astrometry.get_title()
    assert "completeness" in completeness.get_title() and "to 23.00 mag" in completeness.get_title()
    texts = _texts(fig)
    assert "bright cut 21 mag" in " ".join(texts) and "depth 23 mag" in " ".join(texts)
    suptitle = fig._suptitle.get_text()  # noqa: SLF001 - matplotlib keeps it there
    assert "RUN u/test/figure" in suptitle and "tract 9813" in suptitle
    assert f"{sum(m.passed for m in report.metrics)} of {len(report.metrics)} metrics" in suptitle
    assert any(t == "40" for t in texts)  # the processed patch is labelled
    png = write_figure(report, patches, tmp_path / "v.png", run="u/test/figure")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_failing_band_says_fail_in_red() -> None:
    rng = np.random.default_rng(8)
    mags = rng.uniform(18.0, 20.5, 40)
    catalogs, truth, sky_map = _patch_catalog(np.full(40, 0.1), mags)  # 0.1 mag too faint
    report, patches = validate_catalogs(catalogs, truth, sky_map)
    fig = make_figure(report, patches, run="r")
    photometry = fig.axes[0]
    assert photometry.get_title().startswith("i photometry: FAIL")
    assert "median +0.1000 (|x| < 0.02) FAIL" in photometry.get_title()
    assert photometry.title.get_color() == "#c62828"
    assert ": FAIL (" in fig._suptitle.get_text()  # noqa: SLF001
