"""Master calibrations (bias, dark, flat) per detector with validity epochs.

Files: ``calib/bias/<epoch begin>/bias-<det>.fits``, ``calib/dark/<begin>/dark-<det>.fits``
and ``calib/flat/<physical_filter>/<begin>/flat-<det>.fits``.  Each is one primary HDU
(the image, float32; or no data for header-only presets) whose header names the
calibration: ``OBSTYPE`` (bias/dark/flat), ``DETECTOR`` (id), ``DET-NAME``, ``FILTER``
(flats), ``VALIDBEG``/``VALIDEND`` (ISO TAI) and ``BUNIT`` (ADU, ADU/s or none).
The master bias is overscan-subtracted; the master dark is in ADU per second of
``DARKTIME``; the master flat is not normalized (see :mod:`rc2_platform.simulate.render`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.time import Time

from rc2_platform.ingest.bootstrap_config import CalibrationEntry
from rc2_platform.simulate.fastfits import write_header_only, write_image

__all__ = ["calibration_plan", "epoch_isot", "write_calibrations"]

#: Function returning the image of (dataset_type, detector, physical_filter, epoch index).
ImageMaker = Callable[[str, int, str | None, int], np.ndarray]

_BUNIT = {"bias": "adu", "dark": "adu/s", "flat": ""}


def epoch_isot(edges: list[str]) -> list[str]:
    """Validity edges as ISO TAI strings (``YYYY-MM-DDTHH:MM:SS.sss``)."""
    return [_isot(e) for e in edges]


@functools.lru_cache(maxsize=256)
def _isot(edge: str) -> str:
    return str(Time(edge, scale="tai").isot)


def calibration_plan(
    epochs: dict[str, list[str]], detectors: Iterable[int], filters: Iterable[str]
) -> list[tuple[str, int, str | None, int, str, str, str]]:
    """Every calibration to write: (type, detector, filter, epoch index, begin, end, path).

    ``path`` is relative to the survey directory.
    """
    detectors, filters = list(detectors), list(filters)
    plan: list[tuple[str, int, str | None, int, str, str, str]] = []
    for ctype in ("bias", "dark", "flat"):
        edges = epoch_isot(epochs[ctype])
        for e in range(len(edges) - 1):
            begin, end = edges[e], edges[e + 1]
            stamp = begin[:10]
            for det in detectors:
                if ctype == "flat":
                    for filt in filters:
                        rel = f"calib/flat/{filt}/{stamp}/flat-{det:03d}.fits"
                        plan.append((ctype, det, filt, e, begin, end, rel))
                else:
                    rel = f"calib/{ctype}/{stamp}/{ctype}-{det:03d}.fits"
                    plan.append((ctype, det, None, e, begin, end, rel))
    return plan


def _calib_cards(
    ctype: str, det: int, det_name: str, filt: str | None, begin: str, end: str
) -> list[tuple[str, Any, str]]:
    cards: list[tuple[str, Any, str]] = [
        ("TELESCOP", "Subaru", ""),
        ("INSTRUME", "Hyper Suprime-Cam", ""),
        ("OBSTYPE", ctype, "master calibration type"),
        ("DETECTOR", det, "detector id"),
        ("DET-NAME", det_name, "detector name"),
    ]
    if filt is not None:
        cards.append(("FILTER", filt, "physical filter"))
    cards += [
        ("VALIDBEG", begin, "validity begin (TAI, inclusive)"),
        ("VALIDEND", end, "validity end (TAI, exclusive)"),
        ("BUNIT", _BUNIT[ctype], ""),
    ]
    return cards


def write_calibrations(
    root: Path,
    epochs: dict[str, list[str]],
    detectors: dict[int, str],
    filters: Iterable[str],
    make_image: ImageMaker | None,
) -> list[CalibrationEntry]:
    """Write every master calibration and return the manifest entries (absolute paths).

    Parameters
    ----------
    root
        Survey directory.
    epochs
        ``{"bias": edges, "dark": edges, "flat": edges}`` (ISO dates or times, TAI).
    detectors
        Detector id -> name (``"1_46"``).
    filters
        Physical filters that get flats.
    make_image
        Image of each calibration, or None for header-only files.
    """
    entries = []
    for ctype, det, filt, e, begin, end, rel in calibration_plan(epochs, detectors, filters):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        cards = _calib_cards(ctype, det, detectors[det], filt, begin, end)
        if make_image is None:
            write_header_only(path, fits.Header(cards))
        else:
            image = np.asarray(make_image(ctype, det, filt, e), dtype=np.float32)
            write_image(path, cards, image)
        entries.append(
            CalibrationEntry(
                dataset_type=ctype,  # type: ignore[arg-type]
                detector=det,
                physical_filter=filt,
                file=path,
                valid_begin=begin,
                valid_end=end,
                header_only=make_image is None,
            )
        )
    return entries
