"""Dimension records already in the destination must equal the ones a load brings.

A load keeps existing records (it inserts only the missing ones); an existing record
whose other fields differ from the imported one would leave datasets described by
another observation than in their source. :func:`check_records` refuses that before
anything is written: one line naming the element, the data ID and the differing fields
with both values (the repository's first), and how many other records differ. With
``skip_differing`` the repository's records are kept instead and each difference is
returned, so the caller can report what it kept. :func:`drop_duplicate_records` refuses
an export file naming one record twice with different values (it would load the last).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rc2_platform.core import Timespan
from rc2_platform.errors import ConflictingDefinitionError, ExportFormatError

if TYPE_CHECKING:
    from rc2_platform.butler import Butler

__all__ = [
    "MAX_FIELDS_SHOWN",
    "RecordDifference",
    "check_records",
    "drop_duplicate_records",
    "key_filter",
]

#: At most this many distinct values of a dimension go into one ``IN`` filter.
MAX_IN = 1_000
#: At most this many differing fields are shown in full; the rest are counted.
MAX_FIELDS_SHOWN = 3


@dataclass(frozen=True)
class RecordDifference:
    """An existing dimension record whose other fields differ from the incoming one.

    Attributes
    ----------
    element : str
        The dimension element (``visit``, ``detector``, ...).
    data_id : dict
        The record's required dimensions and their values.
    fields : tuple
        ``(column, repository value, incoming value)`` for each differing column.
    """

    element: str
    data_id: dict[str, Any]
    fields: tuple[tuple[str, Any, Any], ...]

    def fields_text(self) -> str:
        """``exposure_time: 30.0 != 31.5, ...``, the repository's value first.

        At most :data:`MAX_FIELDS_SHOWN` fields in full, then ``and N more``.
        """
        shown = [_show(c, old, new) for c, old, new in self.fields[:MAX_FIELDS_SHOWN]]
        if (more := len(self.fields) - MAX_FIELDS_SHOWN) > 0:
            shown.append(f"and {more} more")
        return ", ".join(shown)

    def describe(self) -> str:
        """``visit record {...} (exposure_time: 30.0 != 31.5)``, repository value first."""
        return f"{self.element} record {self.data_id} ({self.fields_text()})"


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


def drop_duplicate_records(
    records: dict[str, list[dict[str, Any]]],
    required: Callable[[str], Sequence[str]],
    source: str,
) -> None:
    """Keep one of each record ``records`` holds more than once; refuse contradictions.

    An export file may name a record twice (two exports concatenated by hand, an edit);
    identical copies are dropped in place. Two copies with other values would make the
    load keep whichever came last, so they are refused before anything is written.

    Parameters
    ----------
    records : dict
        Incoming records by element; changed in place (duplicates removed).
    required : callable
        The required dimensions of an element (its record key).
    source : str
        Where the records come from, for the message (the export file).

    Raises
    ------
    ExportFormatError
        If one record appears twice with different values: one line naming the element,
        the data ID and the differing fields (first copy's value first).
    """
    for element, rows in records.items():
        dims = required(element)
        seen: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row in rows:
            try:
                key = tuple(row[d] for d in dims)
            except KeyError as exc:
                raise ExportFormatError(
                    f"{source}: {element} records have no column {exc.args[0]!r}, which "
                    f"identifies a {element} (columns {sorted(row)}); export them again"
                ) from None
            first = seen.setdefault(key, row)
            if first is row:
                continue
            columns = list(first) + [c for c in row if c not in first]
            diffs = tuple(
                (c, first.get(c), row.get(c)) for c in columns if _differs(first.get(c), row.get(c))
            )
            if diffs:
                diff = RecordDifference(element, dict(zip(dims, key, strict=True)), diffs)
                raise ExportFormatError(
                    f"{source} holds {element} record {diff.data_id} twice with different "
                    f"values ({diff.fields_text()}; first copy first); keep one of them in "
                    "the file (nothing was written)"
                )
        if len(seen) < len(rows):
            rows[:] = list(seen.values())


def check_records(
    butler: Butler,
    records: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    skip_differing: bool = False,
) -> tuple[dict[str, list[Mapping[str, Any]]], list[RecordDifference]]:
    """Compare ``records`` with the destination's; nothing is written.

    Parameters
    ----------
    butler : Butler
        The destination repository.
    records : mapping
        The incoming records by element.
    skip_differing : bool
        Keep the destination's record where it differs instead of refusing.

    Returns
    -------
    missing : dict
        The records that do not exist yet, by element (what a load inserts).
    differing : list of RecordDifference
        The existing records that differ (empty unless ``skip_differing``).

    Raises
    ------
    ConflictingDefinitionError
        If an existing record differs and ``skip_differing`` is false: one line naming
        the first such record and how many others differ.
    """
    reg = butler.registry
    universe = reg.universe
    missing: dict[str, list[Mapping[str, Any]]] = {}
    differing: list[RecordDifference] = []
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
            found.add(key)
            diffs = tuple(
                (c, old[c], v) for c, v in new.items() if c in old and _differs(old[c], v)
            )
            if diffs:
                data_id = dict(zip(required, key, strict=True))
                differing.append(RecordDifference(element, data_id, diffs))
        rest = [r for k, r in wanted.items() if k not in found]
        if rest:
            missing[element] = rest
    if differing and not skip_differing:
        first = differing[0]
        others = len(differing) - 1
        more = f"; {others} more record{'s differ' if others > 1 else ' differs'}" if others else ""
        raise ConflictingDefinitionError(
            f"{first.element} record {first.data_id} exists in {butler.root} with other "
            f"values ({first.fields_text()}; repository value first){more}; nothing was "
            "written (fix one side, or keep the repository's records: --skip-differing-records)"
        )
    return missing, differing


def _differs(old: Any, new: Any) -> bool:
    if old is None or new is None:
        return old is not new
    if isinstance(old, float) or isinstance(new, float):
        try:
            return abs(float(old) - float(new)) > 1e-9 * max(1.0, abs(float(new)))
        except (TypeError, ValueError):
            return True
    if _is_region(old) or _is_region(new):
        return not (_is_region(old) and _is_region(new)) or _encoded(old) != _encoded(new)
    return bool(old != new)


def _is_region(value: Any) -> bool:
    return hasattr(value, "encode") and not isinstance(value, str)


def _encoded(region: Any) -> bytes:
    return bytes(region.encode())


def _show(column: str, old: Any, new: Any) -> str:
    if _is_region(old) and _is_region(new):
        a, b = _show_region(old), _show_region(new)
        if a == b:  # the bounding circles agree to the shown precision
            a, b = _region_digest(old), _region_digest(new)
        return f"{column}: {a} != {b}"
    if isinstance(old, Timespan) and isinstance(new, Timespan) and str(old) == str(new):
        return f"{column}: {old!r} != {new!r}"
    if isinstance(old, Timespan) or isinstance(new, Timespan):
        return f"{column}: {old} != {new}"
    return f"{column}: {old!r} != {new!r}"


def _show_region(region: Any) -> str:
    """The bounding circle of a sphgeom region: centre and radius in degrees."""
    try:
        import lsst.sphgeom as sg

        circle = region.getBoundingCircle()
        centre = sg.LonLat(circle.getCenter())
        return (
            f"circle ra {centre.getLon().asDegrees():.6f} dec {centre.getLat().asDegrees():.6f}"
            f" r {circle.getOpeningAngle().asDegrees():.6f}"
        )
    except (AttributeError, TypeError, ValueError):
        return _region_digest(region)


def _region_digest(region: Any) -> str:
    return f"encoded sha1 {hashlib.sha1(_encoded(region)).hexdigest()[:12]}"
