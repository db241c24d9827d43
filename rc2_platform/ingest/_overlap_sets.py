"""Which sky pixels and patches the ingested raws cover (from the materialized overlaps)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from rc2_platform.butler import Butler


def _overlap_table(butler: Butler, other: str) -> sa.Table | None:
    for ov in butler.registry.universe.config.overlaps:
        if ov.a == "visit_detector_region" and ov.b == other:
            return butler.registry.schema.overlaps[ov.table]
    return None


def covered(butler: Butler, other: str, columns: list[str]) -> set[tuple[Any, ...]] | None:
    """Distinct ``columns`` of ``other`` overlapping any visit_detector_region.

    Returns ``None`` when no visit_detector_region exists yet (visits not defined) or
    the universe has no such overlap table.
    """
    table = _overlap_table(butler, other)
    vdr = butler.registry.schema.elements["visit_detector_region"]
    if table is None:
        return None
    with butler.registry.engine.connect() as conn:
        if conn.execute(sa.select(sa.func.count()).select_from(vdr)).scalar_one() == 0:
            return None
        stmt = sa.select(*[table.c[c] for c in columns]).distinct()
        return {tuple(r) for r in conn.execute(stmt)}
