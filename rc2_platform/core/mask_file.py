"""The bright-object mask file format: circles around bright stars, one text file per patch.

The format is the ds9-region dialect the HSC bright-star masks used::

    # BRIGHT STAR CATALOG: synth_refcat
    # tract: 9813 patch: 40
    wcs; fk5
    circle(150.1234567,2.2345678,36.000")  # ID: 17 mag: 16.80

One ``circle(ra, dec, radius")`` per line (ra/dec in degrees, ICRS; radius in arcsec with
a trailing ``"``), an optional ``# ID: <int> mag: <float>`` comment; ``#`` lines and the
``wcs; fk5`` line are ignored by the reader.  A patch's file lists every circle that
overlaps the patch's outer region (so the same star may appear in neighbouring patches);
a patch with no bright star has a file with the header lines only.

The format sits in the bottom layer because three layers use it: the simulator writes
it, ingest parses it into ``brightObjectMask`` datasets, and the coadd tasks read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rc2_platform.errors import ConfigError

__all__ = ["MaskCircle", "read_mask_file", "write_mask_file"]

_CIRCLE = re.compile(
    r"^circle\(\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*,\s*([0-9.eE+]+)\"\s*\)"
    r"(?:\s*#\s*ID:\s*(\d+))?(?:\s*mag:\s*([-+0-9.eE]+))?"
)


@dataclass(frozen=True, slots=True)
class MaskCircle:
    """One masked circle: centre (deg), radius (arcsec), source id and magnitude."""

    ra: float
    dec: float
    radius_arcsec: float
    id: int = 0
    mag: float = float("nan")


def write_mask_file(
    path: Path, circles: list[MaskCircle], *, tract: int, patch: int, catalog: str
) -> Path:
    """Write a patch's circles in the format described in the module docstring."""
    lines = [f"# BRIGHT STAR CATALOG: {catalog}", f"# tract: {tract} patch: {patch}", "wcs; fk5"]
    for c in circles:
        lines.append(
            f'circle({c.ra:.7f},{c.dec:.7f},{c.radius_arcsec:.3f}")  # ID: {c.id} mag: {c.mag:.2f}'
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def read_mask_file(path: str | Path) -> list[MaskCircle]:
    """Read a bright-object mask file.

    Raises
    ------
    ConfigError
        A line is neither a comment, ``wcs; fk5`` nor a valid ``circle(...)``; the message
        names the file and line number.
    """
    circles = []
    for lineno, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or line.replace(" ", "") in ("wcs;fk5", "fk5"):
            continue
        match = _CIRCLE.match(line)
        if match is None:
            raise ConfigError(
                f"{path}:{lineno}: not a mask circle: {line!r}; expected "
                'circle(RA,DEC,RADIUS")  # ID: N mag: M'
            )
        ra, dec, radius, ident, mag = match.groups()
        circles.append(
            MaskCircle(
                float(ra),
                float(dec),
                float(radius),
                int(ident) if ident else 0,
                float(mag) if mag else float("nan"),
            )
        )
    return circles
