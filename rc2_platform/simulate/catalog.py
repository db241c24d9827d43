"""The synthetic sky: a truth catalog of stars (and a few galaxies) with per-band magnitudes.

Stars follow a power-law magnitude distribution (``dN/dm ∝ 10^(0.25 m)``) in the i band
and colours along an approximate stellar locus: ``g-r`` is drawn between 0.25 and 1.5
(with a tail of M dwarfs that turn red in ``r-i``), and ``r-i``, ``i-z``, ``z-y`` follow
from it.  Galaxies are round Gaussian blobs (``size_arcsec`` is their intrinsic sigma) with
bluer, flatter colours; they are in the truth catalog (``is_star`` false) but not in the
reference catalog.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Table

from rc2_platform.simulate._random import rng_for

__all__ = ["make_truth_catalog", "read_truth", "sample_sky_box", "stellar_colours", "write_truth"]

BANDS = ("g", "r", "i", "z", "y")


def sample_sky_box(
    rng: np.random.Generator, n: int, ra_range: tuple[float, float], dec_range: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` positions uniformly on the sphere inside an RA/Dec box (degrees)."""
    sin_lo, sin_hi = np.sin(np.radians(dec_range[0])), np.sin(np.radians(dec_range[1]))
    dec = np.degrees(np.arcsin(rng.uniform(sin_lo, sin_hi, n)))
    ra = rng.uniform(ra_range[0], ra_range[1], n) % 360.0
    return ra, dec


def stellar_colours(g_r: np.ndarray) -> dict[str, np.ndarray]:
    """Colours ``r-i``, ``i-z``, ``z-y`` along an approximate stellar locus from ``g-r``."""
    red = np.clip(g_r - 1.2, 0.0, None)
    r_i = 0.38 * g_r - 0.05 + 5.0 * red
    i_z = 0.10 + 0.45 * (r_i - 0.1)
    z_y = 0.02 + 0.20 * r_i
    return {"r_i": r_i, "i_z": i_z, "z_y": z_y}


def _power_law_mags(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    # Inverse CDF of dN/dm ∝ 10^(a m) on [lo, hi].
    a = 0.25 * np.log(10.0)
    u_ = rng.uniform(0.0, 1.0, n)
    return np.log(np.exp(a * lo) + u_ * (np.exp(a * hi) - np.exp(a * lo))) / a


def make_truth_catalog(
    seed: int,
    n_stars: int,
    n_galaxies: int,
    ra_range: tuple[float, float],
    dec_range: tuple[float, float],
    mag_range: tuple[float, float] = (16.5, 24.0),
    stream: str = "truth",
) -> Table:
    """Build the truth catalog.

    Parameters
    ----------
    seed
        Survey seed; the catalog depends only on it and the other arguments.
    n_stars, n_galaxies
        Object counts.
    ra_range, dec_range
        Box (degrees) the objects are spread over.
    mag_range
        i-band magnitude range.
    stream
        Name of the random stream (distinct catalogs from one seed need distinct names).

    Returns
    -------
    astropy.table.Table
        Columns ``id``, ``ra``, ``dec`` (deg), ``{band}_mag`` (mag), ``is_star``,
        ``size_arcsec`` (intrinsic Gaussian sigma, 0 for stars), sorted by ``i_mag``
        brightest first with ids 1..N in that order.
    """
    rng = rng_for(seed, stream)
    n = n_stars + n_galaxies
    ra, dec = sample_sky_box(rng, n, ra_range, dec_range)
    i_mag = _power_law_mags(rng, n, *mag_range)
    is_star = np.zeros(n, dtype=bool)
    is_star[:n_stars] = True
    g_r = np.where(is_star, rng.uniform(0.25, 1.5, n), rng.uniform(0.2, 0.8, n))
    col = stellar_colours(g_r)
    # Galaxies: flatter colours than the locus.
    r_i = np.where(is_star, col["r_i"], 0.5 * g_r)
    i_z = np.where(is_star, col["i_z"], 0.3 * g_r)
    z_y = np.where(is_star, col["z_y"], 0.15 * g_r)
    # Galaxies are at the faint end.
    i_mag = np.where(is_star, i_mag, np.maximum(i_mag, 20.0))
    mags = {"i": i_mag}
    mags["r"] = i_mag + r_i
    mags["g"] = mags["r"] + g_r
    mags["z"] = i_mag - i_z
    mags["y"] = mags["z"] - z_y
    size = np.where(is_star, 0.0, rng.uniform(0.6, 1.5, n))
    order = np.argsort(i_mag, kind="stable")
    table = Table()
    table["id"] = np.arange(1, n + 1, dtype=np.int64)
    table["ra"] = ra[order] * u.deg
    table["dec"] = dec[order] * u.deg
    for band in BANDS:
        table[f"{band}_mag"] = mags[band][order] * u.mag
    table["is_star"] = is_star[order]
    table["size_arcsec"] = size[order] * u.arcsec
    return table


def write_truth(
    path: Path, truth: Table, zero_points: dict[str, float], extra: dict[str, Table]
) -> Path:
    """Write the truth catalog FITS file.

    HDU 1 ``TRUTH`` is the catalog; its header carries ``ZP_G`` ... ``ZP_Y`` (magnitude
    giving 1 ADU/s in a calibrated image).  Further HDUs are the tables in ``extra``
    (``ZEROPOINTS``, ``VISITS``, ``DEFECTS``), named by their keys.
    """
    hdus: list[fits.PrimaryHDU | fits.BinTableHDU] = [fits.PrimaryHDU()]
    cat = fits.table_to_hdu(truth)
    cat.name = "TRUTH"
    for band, zp in zero_points.items():
        cat.header[f"ZP_{band.upper()}"] = (zp, f"{band} mag for 1 ADU/s after ISR")
    hdus.append(cat)
    for name, table in extra.items():
        hdu = fits.table_to_hdu(table)
        hdu.name = name
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def read_truth(path: str | Path, hdu: str = "TRUTH") -> Table:
    """Read one table (default the catalog) of a truth file written by :func:`write_truth`."""
    return Table.read(path, hdu=hdu)
