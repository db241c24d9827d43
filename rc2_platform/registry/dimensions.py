"""The dimension universe: elements, their keys, relations and canonical order.

The universe is data: it is read from ``rc2_platform/config/dimensions.yaml`` (validated by
the pydantic models below) and stored in every registry database, so a repository keeps
the universe it was created with.
"""

from __future__ import annotations

import hashlib
import numbers
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.names import (
    INT64_MAX,
    INT64_MIN,
    int_value_problem,
    refusal,
    show,
    string_value_problem,
)
from rc2_platform.core.yaml_safe import load_yaml
from rc2_platform.errors import ConfigError, DimensionError, DimensionValueError

_INT_TEXT = re.compile(r"[+-]?[0-9]{1,40}")  # longer cannot fit 64 bits anyway

ColumnTypeName = Literal["int", "string", "float", "bool"]


class ColumnConfig(BaseModel):
    """One key or metadata column of a dimension element."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: ColumnTypeName
    length: int = 64
    nullable: bool = True


class ElementConfig(BaseModel):
    """One dimension element of ``dimensions.yaml``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    key: ColumnConfig | None = None
    requires: list[str] = Field(default_factory=list)
    implies: list[str] = Field(default_factory=list)
    metadata: list[ColumnConfig] = Field(default_factory=list)
    region: bool = False
    timespan: bool = False
    skypix: int | None = None
    #: Join this relation whenever a query has all its dimensions (e.g. the
    #: exposure <-> visit relation), not only when a requested column needs it.
    always_join: bool = False


class OverlapConfig(BaseModel):
    """A materialized spatial overlap between two spatial elements."""

    model_config = ConfigDict(extra="forbid")

    table: str = Field(max_length=30)
    a: str
    b: str


class UniverseConfig(BaseModel):
    """The whole ``dimensions.yaml`` document."""

    model_config = ConfigDict(extra="forbid")

    version: int
    namespace: str = "rc2"
    elements: list[ElementConfig]
    overlaps: list[OverlapConfig] = Field(default_factory=list)
    #: Spatial families, keyed by a root element: regions of one family nest (a
    #: visit_detector_region lies inside its visit), so a query mixing elements of one
    #: family needs no overlap join. An element in no family is a family of its own.
    spatial_families: dict[str, list[str]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _upgrade_version_1(cls, data: Any) -> Any:
        """Read a version-1 universe (stored in older registries) with its semantics.

        Version 1 had no ``always_join`` / ``spatial_families``: the query planner
        joined ``visit_definition`` when a query had exposure and visit, and grouped
        spatial elements into the families of ``visit`` and ``tract`` (every element
        requiring one of them). Version 2 says so in the configuration.
        """
        if not isinstance(data, dict) or data.get("version") != 1:
            return data
        if "spatial_families" in data:
            return data
        data = dict(data)
        elements = [dict(e) for e in data.get("elements", []) if isinstance(e, dict)]
        requires: dict[str, set[str]] = {}
        for el in elements:
            closure = {el.get("name", "")}
            for dep in el.get("requires", []):
                closure |= requires.get(dep, {dep})
            requires[el.get("name", "")] = closure
            if el.get("name") == "visit_definition":
                el["always_join"] = True
        families: dict[str, list[str]] = {}
        for el in elements:
            if not el.get("region"):
                continue
            for root in ("visit", "tract"):
                if root in requires[el["name"]]:
                    families.setdefault(root, []).append(el["name"])
                    break
        data["elements"] = elements
        data["spatial_families"] = families
        return data

    @model_validator(mode="after")
    def _check_references(self) -> UniverseConfig:
        seen: dict[str, ElementConfig] = {}
        for el in self.elements:
            if el.name in seen:
                raise ValueError(f"element {el.name!r} is defined twice")
            for dep in el.requires + el.implies:
                if dep not in seen or seen[dep].key is None:
                    raise ValueError(
                        f"element {el.name!r} depends on {dep!r}, which must be a dimension "
                        "defined earlier in the file"
                    )
            seen[el.name] = el
        for ov in self.overlaps:
            for side in (ov.a, ov.b):
                if side not in seen or not (seen[side].region or seen[side].skypix):
                    raise ValueError(f"overlap {ov.table!r}: {side!r} is not a spatial element")
        member_of: dict[str, str] = {}
        for root, members in self.spatial_families.items():
            for name in [root, *members]:
                if name not in seen or not (seen[name].region or seen[name].skypix):
                    raise ValueError(f"spatial family {root!r}: {name!r} is not a spatial element")
                if member_of.setdefault(name, root) != root:
                    raise ValueError(
                        f"element {name!r} is in two spatial families ({member_of[name]!r}, {root!r})"
                    )
        return self


@dataclass(frozen=True)
class DimensionElement:
    """A dimension element: a dimension (with its own key) or a relation between dimensions.

    Attributes
    ----------
    name : str
        Element name (also its table name).
    key : ColumnConfig | None
        The element's own key column (named like the element); None for pure relations.
    required : tuple[str, ...]
        All dimensions of the element's primary key, canonical order (includes itself).
    implied : tuple[str, ...]
        Dimensions directly implied by the element (columns of its table).
    metadata : tuple[ColumnConfig, ...]
        Extra columns.
    has_region, has_timespan : bool
        Whether records carry a sky region / a time span.
    skypix_level : int | None
        HTM level for a skypix dimension (no table).
    always_join : bool
        Joined by every query that has all of the element's dimensions.
    """

    name: str
    key: ColumnConfig | None
    required: tuple[str, ...]
    implied: tuple[str, ...]
    metadata: tuple[ColumnConfig, ...]
    has_region: bool
    has_timespan: bool
    skypix_level: int | None
    always_join: bool = False

    @property
    def is_dimension(self) -> bool:
        """Whether the element has its own key (it is a dimension)."""
        return self.key is not None

    @property
    def has_table(self) -> bool:
        """Whether records are stored in a table (skypix dimensions have none)."""
        return self.skypix_level is None

    @property
    def columns(self) -> tuple[str, ...]:
        """Names of every column of the element's table except region/timespan."""
        return self.required + self.implied + tuple(m.name for m in self.metadata)


class DimensionUniverse:
    """All dimension elements, their canonical order and data ID validation.

    Parameters
    ----------
    config : UniverseConfig
        The validated configuration.
    """

    def __init__(self, config: UniverseConfig):
        self.config = config
        self._elements: dict[str, DimensionElement] = {}
        self._required_cache: dict[frozenset[str], tuple[str, ...]] = {}
        order = [el.name for el in config.elements if el.key is not None]
        self._order = {name: i for i, name in enumerate(order)}
        for el in config.elements:
            closure: set[str] = set()
            for dep in el.requires:
                closure.update(self._elements[dep].required)
            if el.key is not None:
                closure.add(el.name)
            self._elements[el.name] = DimensionElement(
                name=el.name,
                key=el.key,
                required=self.sorted(closure),
                implied=self.sorted(el.implies),
                metadata=tuple(el.metadata),
                has_region=el.region,
                has_timespan=el.timespan,
                skypix_level=el.skypix,
                always_join=el.always_join,
            )
        self._families = {
            name: root
            for root, members in config.spatial_families.items()
            for name in [root, *members]
        }

    # --- construction -----------------------------------------------------------------

    @classmethod
    def from_yaml(cls, text: str, source: str = "dimension universe") -> DimensionUniverse:
        """Build a universe from YAML text; invalid config -> ConfigError naming ``source``."""
        try:
            return cls(UniverseConfig.model_validate(load_yaml(text, source)))
        except ValidationError as exc:
            raise ConfigError(
                f"invalid dimension universe configuration {source}: {_first(exc)}"
            ) from None

    @classmethod
    def default(cls) -> DimensionUniverse:
        """The universe shipped in ``rc2_platform/config/dimensions.yaml``."""
        text = resources.files("rc2_platform").joinpath("config/dimensions.yaml").read_text()
        return cls.from_yaml(text)

    def to_yaml(self) -> str:
        """Serialize the configuration (stored in the registry database)."""
        return yaml.safe_dump(self.config.model_dump(), sort_keys=False)

    @cached_property
    def digest(self) -> str:
        """A short hash of the configuration, for comparisons."""
        return hashlib.sha256(self.to_yaml().encode()).hexdigest()[:16]

    # --- lookup -----------------------------------------------------------------------

    @property
    def dimensions(self) -> tuple[str, ...]:
        """All dimension names in canonical order."""
        return tuple(self._order)

    @property
    def elements(self) -> tuple[DimensionElement, ...]:
        """All elements in configuration order."""
        return tuple(self._elements.values())

    def __getitem__(self, name: str) -> DimensionElement:
        try:
            return self._elements[name]
        except KeyError:
            raise DimensionError(
                f"unknown dimension element {name!r}; known: {', '.join(self._elements)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._elements

    def sorted(self, dimensions: Iterable[str]) -> tuple[str, ...]:
        """Return ``dimensions`` deduplicated, in canonical order (unknown -> DimensionError)."""
        names = set(dimensions)
        unknown = sorted(n for n in names if n not in self._order)
        if unknown:
            raise DimensionError(
                f"unknown dimension(s) {unknown}; known dimensions: {', '.join(self._order)}"
            )
        return tuple(sorted(names, key=self._order.__getitem__))

    def expand(self, dimensions: Iterable[str]) -> tuple[str, ...]:
        """Add every required and implied dimension (recursively), canonical order."""
        todo = list(self.sorted(dimensions))
        out: set[str] = set()
        while todo:
            name = todo.pop()
            if name in out:
                continue
            out.add(name)
            el = self._elements[name]
            todo.extend(el.required)
            todo.extend(el.implied)
        return self.sorted(out)

    def required(self, dimensions: Iterable[str]) -> tuple[str, ...]:
        """The minimal dimensions identifying ``dimensions``: expanded, minus implied ones."""
        key = frozenset(dimensions)
        cached = self._required_cache.get(key)
        if cached is None:
            cached = self._required_cache[key] = self._compute_required(key)
        return cached

    def _compute_required(self, dimensions: Iterable[str]) -> tuple[str, ...]:
        full = self.expand(dimensions)
        implied: set[str] = set()
        for name in full:
            implied.update(self._elements[name].implied)
        return tuple(d for d in full if d not in implied)

    def implied(self, dimensions: Iterable[str]) -> tuple[str, ...]:
        """Dimensions of ``expand(dimensions)`` that are not in ``required(dimensions)``."""
        req = set(self.required(dimensions))
        return tuple(d for d in self.expand(dimensions) if d not in req)

    def spatial_family(self, element: str) -> str:
        """The spatial family of an element (its own name when it belongs to none)."""
        return self._families.get(element, element)

    def key_type(self, dimension: str) -> ColumnTypeName:
        """The value type (``int`` or ``string``) of a dimension."""
        key = self[dimension].key
        if key is None:
            raise DimensionError(f"{dimension!r} is not a dimension (it has no key)")
        return key.type

    # --- data IDs ---------------------------------------------------------------------

    def coerce_value(self, dimension: str, value: Any) -> int | str:
        """Check and normalise one data ID value (wrong type -> DimensionValueError)."""
        kind = self.key_type(dimension)
        if kind == "int":
            if type(value) is int:
                if INT64_MIN <= value <= INT64_MAX:
                    return value
            elif (isinstance(value, numbers.Integral) and not isinstance(value, bool)) or (
                isinstance(value, str) and _INT_TEXT.fullmatch(value.strip())
            ):
                value = int(value)
            else:
                raise DimensionValueError(
                    f"data ID value {show(value)} for {dimension!r} must be an integer "
                    f"(got {type(value).__name__})"
                )
            problem = int_value_problem(value)
            if problem is None:
                return value
        else:
            length = self[dimension].key.length  # type: ignore[union-attr]
            problem = string_value_problem(value, length)
            if problem is None:
                return str(value)
        raise DimensionValueError(refusal(f"{dimension} value", value, problem))

    def data_id(
        self,
        mapping: Mapping[str, Any] | None = None,
        dimensions: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> DataCoordinate:
        """Build a validated :class:`DataCoordinate`.

        Parameters
        ----------
        mapping : Mapping[str, Any], optional
            Dimension values (keyword arguments are merged in).
        dimensions : Iterable[str], optional
            Dimensions the data ID must identify; defaults to the mapping's keys. The
            result holds the *required* dimensions of that set, in canonical order; keys
            of the mapping outside the (expanded) set are ignored.

        Raises
        ------
        DimensionError
            Unknown dimension or a required value missing.
        DimensionValueError
            A value of the wrong type.
        """
        values = dict(mapping or {}, **kwargs)
        if isinstance(mapping, DataCoordinate) and dimensions is None and not kwargs:
            dims = self.required(mapping.dimensions)
        else:
            dims = self.required(values.keys() if dimensions is None else dimensions)
        missing = [d for d in dims if d not in values]
        if missing:
            raise DimensionError(
                f"data ID {values} lacks value(s) for {missing}; "
                f"data IDs of dimensions {list(dims)} need all of them"
            )
        return DataCoordinate(dims, tuple(self.coerce_value(d, values[d]) for d in dims))

    def data_id_full(self, values: Mapping[str, Any], dimensions: Iterable[str]) -> DataCoordinate:
        """Build a data ID holding the required *and* implied dimensions of ``dimensions``."""
        dims = self.expand(dimensions)
        return DataCoordinate(dims, tuple(self.coerce_value(d, values[d]) for d in dims))


def _first(exc: ValidationError) -> str:
    """The first problem of a pydantic error on one line: ``field.path: message``."""
    err = exc.errors()[0]
    return f"{'.'.join(str(x) for x in err['loc']) or '(top level)'}: {err['msg']}"
