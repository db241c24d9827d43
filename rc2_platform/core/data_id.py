"""Data IDs: the dimension values that identify a dataset or a quantum."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

DataIdValue = int | str


class DataCoordinate(Mapping[str, DataIdValue]):
    """An immutable, hashable data ID.

    Parameters
    ----------
    dimensions : tuple[str, ...]
        Dimension names, in the universe's canonical order.
    values : tuple[int | str, ...]
        One value per dimension, in the same order.

    Notes
    -----
    Equality and hashing use ``(dimensions, values)``, so two data IDs with the same
    keys and values are the same dictionary key whatever order they were built in,
    as long as both were built with :meth:`from_mapping` against the same order.
    """

    __slots__ = ("_dimensions", "_values", "_hash")

    def __init__(self, dimensions: tuple[str, ...], values: tuple[DataIdValue, ...]):
        if len(dimensions) != len(values):
            raise ValueError(f"data ID has {len(dimensions)} dimensions but {len(values)} values")
        self._dimensions = dimensions
        self._values = values
        self._hash = hash((dimensions, values))

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any], dimensions: tuple[str, ...] | None = None
    ) -> DataCoordinate:
        """Build a data ID from a mapping, keeping only (and requiring) ``dimensions``.

        With ``dimensions`` None, the mapping's keys are used sorted by name; callers
        that know the universe should pass its canonical order instead.
        """
        if dimensions is None:
            dimensions = tuple(sorted(mapping))
        missing = [d for d in dimensions if d not in mapping]
        if missing:
            from rc2_platform.errors import DimensionError

            raise DimensionError(
                f"data ID {dict(mapping)} lacks required dimension(s) {missing}; "
                f"a data ID for dimensions {list(dimensions)} must give all of them"
            )
        return cls(dimensions, tuple(mapping[d] for d in dimensions))

    @classmethod
    def from_value_rows(
        cls, dimensions: tuple[str, ...], rows: Iterable[tuple[DataIdValue, ...]]
    ) -> list[DataCoordinate]:
        """Many data IDs from already-checked value tuples (the registry's bulk paths).

        Skips ``__init__``'s length check: every tuple must have one value per dimension.
        """
        new = object.__new__
        out: list[DataCoordinate] = []
        append = out.append
        for values in rows:
            self = new(cls)
            self._dimensions = dimensions
            self._values = values
            self._hash = hash((dimensions, values))
            append(self)
        return out

    @property
    def dimensions(self) -> tuple[str, ...]:
        """Dimension names, in canonical order."""
        return self._dimensions

    @property
    def values_tuple(self) -> tuple[DataIdValue, ...]:
        """Values in the order of :attr:`dimensions`."""
        return self._values

    def subset(self, dimensions: tuple[str, ...]) -> DataCoordinate:
        """Return the data ID restricted to ``dimensions`` (which must all be present)."""
        return DataCoordinate.from_mapping(self, dimensions)

    def __getitem__(self, key: str) -> DataIdValue:
        try:
            return self._values[self._dimensions.index(key)]
        except ValueError:
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._dimensions)

    def __len__(self) -> int:
        return len(self._dimensions)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DataCoordinate):
            return self._dimensions == other._dimensions and self._values == other._values
        return super().__eq__(other)

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{d}: {v!r}" for d, v in zip(self._dimensions, self._values, strict=True)
        )
        return "{" + inner + "}"

    def to_dict(self) -> dict[str, DataIdValue]:
        """Return a plain ``dict`` copy."""
        return dict(zip(self._dimensions, self._values, strict=True))
