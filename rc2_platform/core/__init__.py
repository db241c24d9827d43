"""Shared value types every layer uses: data IDs, time spans, dataset types, refs, file records.

Also exposures (:mod:`rc2_platform.core.exposure`) and the bright-object mask file format
(:mod:`rc2_platform.core.mask_file`). This is the bottom layer beside
:mod:`rc2_platform.geometry`: it imports no other rc2_platform package (only
:mod:`rc2_platform.errors`), so the datastore, the instrument and execution can use these types
without importing the registry.
"""

from __future__ import annotations

from rc2_platform.core.data_id import DataCoordinate, DataIdValue
from rc2_platform.core.dataset_types import (
    CollectionType,
    DatasetIdGenMode,
    DatasetRef,
    DatasetType,
    make_dataset_id,
)
from rc2_platform.core.datastore_record import DatastoreRecord
from rc2_platform.core.timespan import Timespan

__all__ = [
    "CollectionType",
    "DataCoordinate",
    "DataIdValue",
    "DatastoreRecord",
    "DatasetIdGenMode",
    "DatasetRef",
    "DatasetType",
    "Timespan",
    "make_dataset_id",
]
