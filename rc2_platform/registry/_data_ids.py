"""Data IDs given by callers, checked and normalised set-wise (the insert and search hot path)."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.names import INT64_MAX, INT64_MIN
from rc2_platform.registry.dimensions import DimensionUniverse


def data_ids(
    universe: DimensionUniverse, dims: tuple[str, ...], items: Iterable[Mapping[str, Any]]
) -> list[DataCoordinate]:
    """Checked data IDs of exactly ``dims`` (required dimensions, canonical order)."""
    return DataCoordinate.from_value_rows(dims, data_id_values(universe, dims, items))


def data_id_values(
    universe: DimensionUniverse, dims: tuple[str, ...], items: Iterable[Mapping[str, Any]]
) -> list[tuple[Any, ...]]:
    """Checked, normalised value tuples (``dims`` order) of data IDs.

    Raises DimensionError naming the data ID that lacks a dimension, DimensionValueError
    for a value of the wrong type.
    """
    items = items if isinstance(items, list) else list(items)
    try:
        return _value_rows(universe, dims, items)
    except (KeyError, TypeError):
        # Some data ID lacks a dimension (or is not a mapping): the slow path names it.
        return [
            d.values_tuple
            if isinstance(d, DataCoordinate) and d.dimensions == dims
            else universe.data_id(d, dims).values_tuple
            for d in items
        ]


def _value_rows(
    universe: DimensionUniverse, dims: tuple[str, ...], items: Sequence[Mapping[str, Any]]
) -> list[tuple[Any, ...]]:
    """Checked value tuples of data IDs, validating each distinct value once per column."""
    get = operator.itemgetter(*dims)
    one = len(dims) == 1
    rows: list[tuple[Any, ...]] = [
        d.values_tuple
        if type(d) is DataCoordinate and d.dimensions == dims
        else ((get(d),) if one else get(d))
        for d in items
    ]
    if not rows:
        return rows
    coerce = universe.coerce_value
    fixes: dict[int, dict[tuple[type, Any], Any]] = {}
    for i, (name, column) in enumerate(zip(dims, zip(*rows, strict=True), strict=True)):
        is_int = universe.key_type(name) == "int"
        for kind, value in {(type(v), v) for v in column}:
            if is_int and kind is int and INT64_MIN <= value <= INT64_MAX:
                continue
            fixed = coerce(name, value)
            if type(fixed) is not kind or fixed != value:
                fixes.setdefault(i, {})[(kind, value)] = fixed
    if fixes:
        rows = [
            tuple(fixes[i].get((type(v), v), v) if i in fixes else v for i, v in enumerate(row))
            for row in rows
        ]
    return rows
