"""Set-wise spatial overlap computation with HTM envelopes and exact sphgeom tests.

Never a double loop over two whole tables: candidates come from shared HTM pixels
(an in-memory pixel index, or the materialized ``*_htm7`` tables in the database),
then each candidate pair gets one exact ``Region.overlaps`` test.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from functools import lru_cache
from typing import Any

from lsst.sphgeom import HtmPixelization, Region

#: Level of the in-memory candidate index used when no pixel table exists (~1 deg pixels).
INDEX_LEVEL = 6


@lru_cache(maxsize=8)
def _pixelization(level: int) -> HtmPixelization:
    return HtmPixelization(level)


@lru_cache(maxsize=200_000)
def _pixel_region(level: int, index: int) -> Region:
    return _pixelization(level).pixel(index)


def envelope_ids(region: Region, level: int) -> list[int]:
    """HTM pixel indices at ``level`` whose pixels may overlap ``region``."""
    ranges = _pixelization(level).envelope(region).ranges()
    return [i for begin, end in ranges for i in range(begin, end)]


def regions_overlap(a: Region, b: Region) -> bool:
    """Exact test; an undecidable answer counts as overlapping (conservative)."""
    result = a.overlaps(b)
    return True if result is None else bool(result)


def pixel_overlaps(items: Iterable[tuple[Any, Region]], level: int) -> list[tuple[Any, int]]:
    """``(key, pixel)`` for every pixel at ``level`` that really overlaps each region."""
    out = []
    for key, region in items:
        for pix in envelope_ids(region, level):
            if regions_overlap(region, _pixel_region(level, pix)):
                out.append((key, pix))
    return out


def region_pairs(
    left: Sequence[tuple[Hashable, Region]],
    right: Sequence[tuple[Hashable, Region]],
    level: int = INDEX_LEVEL,
) -> list[tuple[Hashable, Hashable]]:
    """Overlapping ``(left key, right key)`` pairs via an in-memory HTM index of ``right``."""
    index: dict[int, list[int]] = defaultdict(list)
    for j, (_, region) in enumerate(right):
        for pix in envelope_ids(region, level):
            index[pix].append(j)
    out = []
    for key, region in left:
        candidates: set[int] = set()
        for pix in envelope_ids(region, level):
            candidates.update(index.get(pix, ()))
        for j in sorted(candidates):
            if regions_overlap(region, right[j][1]):
                out.append((key, right[j][0]))
    return out


def candidate_pairs(
    left: Sequence[tuple[Hashable, Region]],
    left_pixels: Iterable[tuple[Hashable, int]],
    right_by_pixel: dict[int, list[Hashable]],
    right_regions: dict[Hashable, Region],
) -> list[tuple[Hashable, Hashable]]:
    """Exact pairs from precomputed pixel memberships of both sides."""
    regions = dict(left)
    cands: dict[Hashable, set[Hashable]] = defaultdict(set)
    for key, pix in left_pixels:
        cands[key].update(right_by_pixel.get(pix, ()))
    out = []
    for key, others in cands.items():
        region = regions[key]
        for other in others:
            if regions_overlap(region, right_regions[other]):
                out.append((key, other))
    return out
