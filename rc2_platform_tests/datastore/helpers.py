"""Small builders shared by the datastore tests."""

from __future__ import annotations

from typing import Any

from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import DatasetRef, DatasetType

CALEXP = DatasetType("calexp", ("instrument", "visit", "detector"), "Exposure")


def make_ref(
    name: str = "calexp",
    storage_class: str = "Exposure",
    run: str = "HSC/runs/RC2",
    **data_id: Any,
) -> DatasetRef:
    """A ref of a fresh dataset type with ``data_id`` (default HSC visit 1228 det 49)."""
    if not data_id:
        data_id = {"instrument": "HSC", "visit": 1228, "detector": 49}
    dims = tuple(data_id)
    return DatasetRef(
        DatasetType(name, dims, storage_class), DataCoordinate.from_mapping(data_id, dims), run
    )
