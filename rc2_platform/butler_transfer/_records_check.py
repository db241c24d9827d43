"""Dimension records already in the destination must equal the ones a load brings.

A load keeps existing records (it inserts only the missing ones); an existing record
whose other fields differ from the imported one would leave datasets described by
another observation than in their source. :func:`check_records` refuses that before
anything is written: one line naming the element, the data ID and the differing fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rc2_platform.errors import ConflictingDefinitionError

if TYPE_CHECKING:
    from rc2_platform.butler import Butler

__all__ = ["check_records", "key_filter"]

#: At most this many distinct values of a dimension go into one ``IN`` filter.
MAX_IN = 1_000


def key_filter(dims: Sequence[str], keys: set[tuple[Any, ...]]) -> str:
    """A where-expression narrowing a record query to ``keys`` (exact match is Python's).

    One ``IN`` list per key column with at most 1,000 distinct values, so a repository
    with a whole sky map is not read entirely for a tract's patches.
    """
    parts = []
    for i, dim in enumerate(dims):
        values = {k[i] for k in keys}
        if not values or len(values) > MAX_IN:
            continue
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            listed = ", ".join(str(v) for v in sorted(values))
        elif all(isinstance(v, str) and "'" not in v for v in values):
            listed = ", ".join(f"'{v}'" for v in sorted(values))
        else:
            continue
        parts.append(f"{dim} IN ({listed})")
    return " AND ".join(parts)


def check_records(
    butler: Butler, records: Mapping[str, Sequence[Mapping[str, Any]]]
) -> dict[str, list[Mapping[str, Any]]]:
    """Raise ConflictingDefinitionError if an existing record differs from one in ``records``.

    Returns the records that do not exist yet, by element (what a load inserts).
    """
    reg = butler.registry
    universe = reg.universe
    missing: dict[str, list[Mapping[str, Any]]] = {}
    for element, rows in records.items():
        if not rows:
            continue
        required = universe[element].required
        wanted = {tuple(r[d] for d in required): r for r in rows}
        found: set[tuple[Any, ...]] = set()
        for old in reg.query_dimension_records(element, key_filter(required, set(wanted))):
            key = tuple(old[d] for d in required)
            new = wanted.get(key)
            if new is None:
                continue
            diffs = [c for c, v in new.items() if c in old and _differs(old[c], v)]
            if diffs:
                data_id = dict(zip(required, key, strict=True))
                detail = ", ".join(_show(c, old[c], new[c]) for c in diffs)
                raise ConflictingDefinitionError(
                    f"{element} record {data_id} exists in {butler.root} with other values "
                    f"({detail}; repository value first); nothing was written"
                )
            found.add(key)
        rest = [r for k, r in wanted.items() if k not in found]
        if rest:
            missing[element] = rest
    return missing


def _differs(old: Any, new: Any) -> bool:
    if old is None or new is None:
        return old is not new
    if isinstance(old, float) or isinstance(new, float):
        try:
            return abs(float(old) - float(new)) > 1e-9 * max(1.0, abs(float(new)))
        except (TypeError, ValueError):
            return True
    if hasattr(old, "encode") and not isinstance(old, str):  # sphgeom regions
        return bool(hasattr(new, "encode") and bytes(old.encode()) != bytes(new.encode()))
    return bool(old != new)


def _show(column: str, old: Any, new: Any) -> str:
    if column == "region":
        return "region differs"
    return f"{column}: {old!r} != {new!r}"
