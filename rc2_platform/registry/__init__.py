"""The registry: dimension universe, schema, collections, datasets and queries.

Public API::

    from rc2_platform.registry import Registry, DimensionUniverse, DataCoordinate, ...
    reg = Registry.create("sqlite:///repo/registry.sqlite3")
"""

from __future__ import annotations

from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import (
    CollectionType,
    DatasetIdGenMode,
    DatasetRef,
    DatasetType,
    make_dataset_id,
)
from rc2_platform.core.timespan import Timespan
from rc2_platform.registry.dimensions import DimensionElement, DimensionUniverse
from rc2_platform.registry.registry import Registry
from rc2_platform.registry.schema import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION",
    "CollectionType",
    "DataCoordinate",
    "DatasetIdGenMode",
    "DatasetRef",
    "DatasetType",
    "DimensionElement",
    "DimensionUniverse",
    "Registry",
    "Timespan",
    "make_dataset_id",
]
