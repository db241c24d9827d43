"""Finding datasets through the butler: resolution, URIs and the query pass-throughs.

:class:`ButlerQueries` is a base class of :class:`~rc2_platform.butler.Butler`: its
methods are the butler's (``Butler.resolve``, ``Butler.query_datasets``, ...), searching
the collections given or, by default, the butler's ``collections``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rc2_platform.core import DataCoordinate, DatasetRef, DatasetType, Timespan
from rc2_platform.errors import DatasetNotFoundError

if TYPE_CHECKING:
    from rc2_platform.datastore import DatastoreRecord, FileDatastore
    from rc2_platform.registry import Registry

CollectionArg = str | Sequence[str]


class ButlerQueries:
    """The read-side lookups of :class:`~rc2_platform.butler.Butler` (a base class of it)."""

    if TYPE_CHECKING:  # provided by Butler
        registry: Registry
        datastore: FileDatastore
        collections: list[str]

    def _collections(self, collections: CollectionArg | None) -> list[str]:
        if collections is None:
            if not self.collections:
                raise DatasetNotFoundError(
                    "no collections given to search; pass --collections (or collections=...)"
                )
            return self.collections
        return [collections] if isinstance(collections, str) else list(collections)

    def _dataset_type(self, dataset_type: str | DatasetType) -> DatasetType:
        if isinstance(dataset_type, DatasetType):
            return dataset_type
        return self.registry.get_dataset_type(dataset_type)

    def datastore_records(self, refs: Iterable[DatasetRef]) -> dict[uuid.UUID, DatastoreRecord]:
        """The datastore records of ``refs`` (one query per 5,000 refs)."""
        return self.registry.get_datastore_records(refs)

    def get_uris(self, refs: Iterable[DatasetRef]) -> dict[uuid.UUID, str]:
        """``file://`` URIs of the datasets' files (datasets without a file are left out)."""
        records = self.datastore_records(refs)
        return {i: self.datastore.absolute(r).as_uri() for i, r in records.items()}

    def resolve(
        self,
        dataset_type: str | DatasetType | DatasetRef,
        data_id: Mapping[str, Any] | None = None,
        *,
        collections: CollectionArg | None = None,
        timespan: Timespan | None = None,
    ) -> DatasetRef:
        """Find the ref of one dataset (a ref is returned as is)."""
        if isinstance(dataset_type, DatasetRef):
            return dataset_type
        dt = self._dataset_type(dataset_type)
        ref = self.registry.find_dataset(
            dt, data_id or {}, self._collections(collections), timespan
        )
        if ref is None:
            raise DatasetNotFoundError(
                f"no {dt.name} dataset with data ID {dict(data_id or {})} in collections "
                f"{self._collections(collections)}"
            )
        return ref

    def query_datasets(
        self,
        dataset_type: str | DatasetType,
        *,
        collections: CollectionArg | None = None,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        find_first: bool = True,
    ) -> list[DatasetRef]:
        """Datasets of one type in ``collections`` matching ``where``."""
        return self.registry.query_datasets(
            dataset_type, self._collections(collections), where, bind, find_first
        )

    def query_data_ids(
        self, dimensions: Iterable[str], *, where: str = "", bind: Mapping[str, Any] | None = None
    ) -> list[DataCoordinate]:
        """Data IDs of ``dimensions`` matching ``where``."""
        return self.registry.query_data_ids(dimensions, where, bind)

    def query_dimension_records(
        self, element: str, *, where: str = "", bind: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Dimension records of ``element`` matching ``where``."""
        return self.registry.query_dimension_records(element, where, bind)
