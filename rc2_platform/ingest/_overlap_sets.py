"""Which sky pixels and patches the ingested raws cover (from the materialized overlaps)."""

from __future__ import annotations

from typing import Any

from rc2_platform.butler import Butler

#: The element whose records are the raws' footprints on the sky.
FOOTPRINT = "visit_detector_region"


def covered(butler: Butler, other: str, columns: list[str]) -> set[tuple[Any, ...]] | None:
    """Distinct ``columns`` of ``other`` overlapping any visit_detector_region.

    Returns ``None`` when no visit_detector_region exists yet (visits not defined) or
    the universe has no such overlap table.
    """
    reg = butler.registry
    if not any({ov.a, ov.b} == {FOOTPRINT, other} for ov in reg.universe.config.overlaps):
        return None
    if reg.count_dimension_records(FOOTPRINT) == 0:
        return None
    return reg.query_overlaps(FOOTPRINT, other, columns)
