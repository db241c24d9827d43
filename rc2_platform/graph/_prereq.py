"""Set-based lookups of prerequisite inputs: calibrations by time, shards by overlap, plain.

Each function resolves one prerequisite dataset type for *all* candidate quanta of a
task with a fixed, small number of registry queries, and returns per quantum key the
refs found, or a reason (groupable text) and a detail (one example) when none was.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import DatasetRef, DatasetType
from rc2_platform.core.timespan import Timespan
from rc2_platform.errors import GraphError
from rc2_platform.registry.registry import Registry

QuantumKey = tuple[Any, ...]


@dataclass(frozen=True)
class Lookup:
    """Result of one prerequisite lookup for one quantum."""

    refs: tuple[DatasetRef, ...]
    reason: str = ""
    detail: str = ""


def _index(dims: Sequence[str], wanted: Sequence[str], what: str) -> list[int]:
    missing = [d for d in wanted if d not in dims]
    if missing:
        raise GraphError(
            f"{what} has dimensions {list(wanted)}, but the quanta only know {list(dims)}; "
            "fix the connection's dimensions"
        )
    return [dims.index(d) for d in wanted]


def _fmt(data_id: DataCoordinate) -> str:
    return ", ".join(f"{d} {v}" for d, v in data_id.items() if d != "instrument")


def _in_clause(values: Mapping[str, Iterable[Any]]) -> tuple[str, dict[str, Any]]:
    parts, bind = [], {}
    for dim, vals in values.items():
        parts.append(f"{dim} IN (:rc2_{dim})")
        bind[f"rc2_{dim}"] = sorted(set(vals), key=repr)
    return " AND ".join(parts), bind


def quantum_timespans(
    registry: Registry, qdims: Sequence[str], keys: Iterable[QuantumKey]
) -> dict[QuantumKey, Timespan]:
    """The validity time of each quantum: its exposure's (or else visit's) time span.

    One ``query_dimension_records`` call; quanta with neither dimension get an
    unbounded span (any calibration validity matches).
    """
    keys = list(keys)
    element = "exposure" if "exposure" in qdims else "visit" if "visit" in qdims else None
    if element is None:
        return {k: Timespan() for k in keys}
    i_inst, i_el = qdims.index("instrument"), qdims.index(element)
    where, bind = _in_clause(
        {"instrument": (k[i_inst] for k in keys), element: (k[i_el] for k in keys)}
    )
    spans = {
        (r["instrument"], r[element]): r["timespan"]
        for r in registry.query_dimension_records(element, where, bind)
    }
    out = {}
    for k in keys:
        ts = spans.get((k[i_inst], k[i_el]))
        out[k] = ts if ts is not None else Timespan()
    return out


def find_calibrations(
    registry: Registry,
    dataset_type: DatasetType,
    collections: Sequence[str],
    qdims: Sequence[str],
    timespans: Mapping[QuantumKey, Timespan],
) -> dict[QuantumKey, Lookup]:
    """Resolve a CALIBRATION prerequisite for every quantum by validity time (one query)."""
    idx = _index(qdims, dataset_type.dimensions, f"calibration {dataset_type.name!r}")
    items: dict[tuple[DataCoordinate, Timespan], None] = {}
    per_q: dict[QuantumKey, tuple[DataCoordinate, Timespan]] = {}
    for k, ts in timespans.items():
        coord = DataCoordinate(dataset_type.dimensions, tuple(k[i] for i in idx))
        per_q[k] = (coord, ts)
        items[(coord, ts)] = None
    found = registry.find_calibrations(dataset_type, collections, list(items)) if items else {}
    out = {}
    for k, pair in per_q.items():
        ref = found.get(pair)
        if ref is not None:
            out[k] = Lookup((ref,))
        else:
            coord, ts = pair
            begin = ts.begin
            when = "any time" if begin is None else str(begin.isot)
            out[k] = Lookup(
                (),
                f"no {dataset_type.name} for {_fmt(coord)} valid at the observation time",
                f"{_fmt(coord)} at {when} TAI",
            )
    return out


def _region_element(registry: Registry, qdims: Sequence[str]) -> str:
    best: tuple[int, str] | None = None
    for el in registry.universe.elements:
        fits = el.has_region and set(el.required) <= set(qdims)
        if fits and (best is None or len(el.required) > best[0]):
            best = (len(el.required), el.name)
    if best is None:
        raise GraphError(
            f"quanta with dimensions {list(qdims)} have no sky region, so a spatial "
            "prerequisite cannot be looked up; give the task a visit/detector or patch dimension"
        )
    return best[1]


def find_spatial(
    registry: Registry,
    dataset_type: DatasetType,
    collections: Sequence[str],
    qdims: Sequence[str],
    keys: Iterable[QuantumKey],
) -> dict[QuantumKey, Lookup]:
    """Resolve a SPATIAL prerequisite (sky-pixel shards) by region overlap (two queries).

    The materialized overlap of the quanta's region element (e.g.
    ``visit_detector_region``) with the shard pixelization gives the pixels, restricted
    in SQL to pixels that hold a dataset; one find-first query then resolves them.
    """
    keys = list(keys)
    skypix = [d for d in dataset_type.dimensions if registry.universe[d].skypix_level is not None]
    if len(skypix) != 1 or len(dataset_type.dimensions) != 1:
        raise GraphError(
            f"spatial prerequisite {dataset_type.name!r} must have exactly one sky-pixel "
            f"dimension (e.g. htm7), not {list(dataset_type.dimensions)}"
        )
    pix = skypix[0]
    element = _region_element(registry, qdims)
    el_dims = registry.universe[element].required
    idx = _index(qdims, el_dims, f"region element {element!r}")
    el_keys = {k: tuple(k[i] for i in idx) for k in keys}
    pixels: dict[tuple[Any, ...], set[int]] = defaultdict(set)
    if keys:
        where, bind = _in_clause(
            {d: [ek[j] for ek in el_keys.values()] for j, d in enumerate(el_dims)}
        )
        names, rows = registry.query_data_id_rows(
            [*el_dims, pix], where, bind, datasets=[dataset_type], collections=collections
        )
        ridx = [names.index(d) for d in el_dims]
        ipix = names.index(pix)
        for row in rows:
            pixels[tuple(row[i] for i in ridx)].add(row[ipix])
    wanted = {p for ek in set(el_keys.values()) for p in pixels.get(ek, ())}
    refs = (
        registry.find_datasets(
            dataset_type, collections, [DataCoordinate((pix,), (p,)) for p in sorted(wanted)]
        )
        if wanted
        else {}
    )
    by_pix = {c[pix]: r for c, r in refs.items()}
    out = {}
    for k, ek in el_keys.items():
        found = tuple(by_pix[p] for p in sorted(pixels.get(ek, ())) if p in by_pix)
        desc = ", ".join(f"{d} {v}" for d, v in zip(el_dims, ek, strict=True) if d != "instrument")
        out[k] = Lookup(
            found, f"no {dataset_type.name} shard overlaps the quantum's {element}", desc
        )
    return out


def find_plain(
    registry: Registry,
    dataset_type: DatasetType,
    collections: Sequence[str],
    qdims: Sequence[str],
    keys: Iterable[QuantumKey],
) -> dict[QuantumKey, Lookup]:
    """Resolve a PLAIN prerequisite whose dimensions the quantum determines (one query)."""
    keys = list(keys)
    idx = _index(qdims, dataset_type.dimensions, f"prerequisite {dataset_type.name!r}")
    coords = {k: DataCoordinate(dataset_type.dimensions, tuple(k[i] for i in idx)) for k in keys}
    wanted = set(coords.values())
    found = registry.find_datasets(dataset_type, collections, list(wanted)) if wanted else {}
    out = {}
    for k, coord in coords.items():
        ref = found.get(coord)
        out[k] = (
            Lookup((ref,))
            if ref is not None
            else Lookup((), f"no {dataset_type.name} for {_fmt(coord)}", _fmt(coord))
        )
    return out
