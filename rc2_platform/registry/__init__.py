"""The registry: dimension universe, schema, collections, datasets and queries.

Public API::

    from rc2_platform.registry import Registry, DimensionUniverse, DataCoordinate, ...
    reg = Registry.create("sqlite:///repo/registry.sqlite3")

Every SQL statement of rc2_platform is written in this package; other layers call
:class:`Registry` methods. ``DatabaseError`` is the driver error class a caller may still
see (a server going away mid-call); ``connecting``, ``safe_url`` and ``strip_password``
handle registry URLs without ever printing a password.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError as DatabaseError

from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import (
    CollectionType,
    DatasetIdGenMode,
    DatasetRef,
    DatasetType,
    make_dataset_id,
)
from rc2_platform.core.timespan import Timespan
from rc2_platform.registry._dataset_columns import DatasetColumns
from rc2_platform.registry._engine import connecting, safe_url, strip_password
from rc2_platform.registry._migrate import MigrationReport
from rc2_platform.registry._search import DatasetColumnsFound
from rc2_platform.registry._usage import Certification, CollectionUse
from rc2_platform.registry.dimensions import DimensionElement, DimensionUniverse
from rc2_platform.registry.registry import Registry
from rc2_platform.registry.schema import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION",
    "Certification",
    "CollectionUse",
    "CollectionType",
    "DataCoordinate",
    "DatabaseError",
    "DatasetColumns",
    "DatasetColumnsFound",
    "DatasetIdGenMode",
    "DatasetRef",
    "DatasetType",
    "DimensionElement",
    "DimensionUniverse",
    "MigrationReport",
    "Registry",
    "Timespan",
    "connecting",
    "make_dataset_id",
    "safe_url",
    "strip_password",
]
