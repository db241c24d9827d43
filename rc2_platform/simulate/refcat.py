"""Reference-catalog shards: one FITS table per HTM level-7 pixel.

Each shard ``DIR/refcat/<name>/<htm7>.fits`` holds the stars whose position falls in that
trixel, with columns ``id``, ``ra``, ``dec`` (deg), ``{band}_mag`` and ``{band}_mag_err``
(mag) for every band.  Reference magnitudes are the truth plus Gaussian noise of the
stated error (0.005 mag at the bright end, growing towards the faint end), like a real
external catalog.  The header carries ``HTM7`` (the pixel id) and ``REFCAT`` (the name).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import Table
from lsst.sphgeom import HtmPixelization, LonLat, UnitVector3d

from rc2_platform.geometry import HTM_LEVEL
from rc2_platform.simulate._random import rng_for

__all__ = ["htm7_index", "read_shard", "reference_table", "write_refcat_shards"]


def htm7_index(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """HTM level-7 pixel id of each position (degrees)."""
    pix = HtmPixelization(HTM_LEVEL)
    return np.array(
        [
            pix.index(UnitVector3d(LonLat.fromDegrees(float(r), float(d))))
            for r, d in zip(ra, dec, strict=True)
        ],
        dtype=np.int64,
    )


def reference_table(truth: Table, bands: list[str], seed: int) -> Table:
    """The reference catalog of the truth's stars: noisy magnitudes with errors."""
    stars = truth[truth["is_star"]]
    rng = rng_for(seed, "refcat-noise")
    ref = Table()
    ref["id"] = np.asarray(stars["id"], dtype=np.int64)
    ref["ra"] = np.asarray(stars["ra"], dtype=float) * u.deg
    ref["dec"] = np.asarray(stars["dec"], dtype=float) * u.deg
    for band in bands:
        mag = np.asarray(stars[f"{band}_mag"], dtype=float)
        err = 0.005 + 0.01 * 10 ** (0.4 * (mag - 22.0))
        ref[f"{band}_mag"] = (mag + rng.normal(0.0, 1.0, len(mag)) * err) * u.mag
        ref[f"{band}_mag_err"] = err * u.mag
    return ref


def write_refcat_shards(ref: Table, directory: Path, name: str) -> dict[int, Path]:
    """Split ``ref`` by HTM7 pixel and write one FITS table per pixel.

    Returns
    -------
    dict[int, pathlib.Path]
        Pixel id -> file written, sorted by id.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ids = htm7_index(np.asarray(ref["ra"]), np.asarray(ref["dec"]))
    out: dict[int, Path] = {}
    for pix in np.unique(ids):
        shard = ref[ids == pix]
        shard.meta["HTM7"] = int(pix)
        shard.meta["REFCAT"] = name
        path = directory / f"{int(pix)}.fits"
        shard.write(path, overwrite=True)
        out[int(pix)] = path
    return out


def read_shard(path: str | Path) -> Table:
    """Read one shard written by :func:`write_refcat_shards`."""
    return Table.read(path)
