"""Registry methods of collections and dataset types: registering, reading, removing.

:class:`RegistryCollections` is a base class of :class:`~rc2_platform.registry.Registry`
(kept apart so the facade module stays small); the SQL is in ``_collections.py`` and
``_datasets.py``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from rc2_platform.core.dataset_types import CollectionType, DatasetType
from rc2_platform.registry._search import CollectionArg
from rc2_platform.registry._usage import UsageQueries

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    import sqlalchemy as sa

    from rc2_platform.registry._collections import CollectionManager
    from rc2_platform.registry._connections import Connections
    from rc2_platform.registry._datasets import DatasetManager
    from rc2_platform.registry._search import DatasetSearch
    from rc2_platform.registry.schema import RegistrySchema


class RegistryCollections:
    """Collections and dataset types of the registry (mixed into ``Registry``)."""

    if TYPE_CHECKING:
        schema: RegistrySchema
        collections: CollectionManager
        datasets: DatasetManager
        _db: Connections
        _search: DatasetSearch

        def transaction(self) -> AbstractContextManager[sa.Connection]: ...
        def refresh(self) -> None: ...

    # --- collections ------------------------------------------------------------------

    def register_run(self, name: str, doc: str | None = None) -> bool:
        """Create a RUN collection; False if it exists."""
        return self.register_collection(name, CollectionType.RUN, doc)

    def register_collection(
        self, name: str, type: CollectionType = CollectionType.TAGGED, doc: str | None = None
    ) -> bool:
        """Create a collection of ``type``; False if it exists with that type."""
        with self.transaction() as conn:
            return self.collections.register(conn, name, type, doc)

    def get_collection_type(self, name: str) -> CollectionType:
        """The type of collection ``name`` (MissingCollectionError if absent)."""
        with self._db.read() as conn:
            return self.collections.get(conn, name).type

    def set_collection_chain(self, parent: str, children: Sequence[str]) -> None:
        """Set the ordered children of CHAINED ``parent`` (cycles -> CollectionCycleError)."""
        with self.transaction() as conn:
            self.collections.set_chain(conn, parent, children)
        self._search.clear_cache()

    def get_collection_chain(self, parent: str) -> list[str]:
        """The ordered direct children of CHAINED ``parent``."""
        with self._db.read() as conn:
            return self.collections.get_chain(conn, parent)

    def flatten_collections(self, collections: CollectionArg) -> list[str]:
        """The non-CHAINED collections searched for ``collections``, in order."""
        with self._db.read() as conn:
            return [c.name for c in self.collections.flatten(conn, collections)]

    def query_collections(
        self,
        pattern: str | re.Pattern[str] | None = None,
        types: Iterable[CollectionType] | None = None,
    ) -> list[str]:
        """Collection names matching a glob (or compiled regex) and types, sorted."""
        with self._db.read() as conn:
            return self.collections.query(conn, pattern, types)

    def remove_collection(self, name: str, *, unlink_from_chains: bool = False) -> None:
        """Remove a collection; removing a RUN removes its datasets.

        A child of a chain is refused (CollectionError naming the chains) unless
        ``unlink_from_chains`` drops it from them in the same transaction.
        """
        with self.transaction() as conn:
            rec = self.collections.get(conn, name)
            if unlink_from_chains:
                for parent_id in UsageQueries(self.collections, self.datasets).chain_parents(
                    conn, rec.id
                ):
                    UsageQueries(self.collections, self.datasets).remove_from_chain(
                        conn, parent_id, rec.id
                    )
            if rec.type == CollectionType.TAGGED:
                # tags rows carry no foreign key to collection (insert speed): delete them.
                self.datasets.remove_tagged(conn, rec.id)
            elif rec.type == CollectionType.RUN:
                # nor to dataset: the datasets go with their tags rows and file records.
                d = self.schema.dataset
                self.datasets.delete_where(conn, d.c.run_id == rec.id)
            self.collections.remove(conn, name)
        self.refresh()

    # --- dataset types ----------------------------------------------------------------

    def register_dataset_type(self, dataset_type: DatasetType) -> bool:
        """Register a dataset type; False if identical (different -> ConflictingDefinitionError)."""
        with self.transaction() as conn:
            return self.datasets.register(conn, dataset_type)

    def get_dataset_type(self, name: str) -> DatasetType:
        """A registered dataset type (MissingDatasetTypeError otherwise)."""
        with self._db.read() as conn:
            return self.datasets.get(conn, name).dataset_type

    def query_dataset_types(self, pattern: str | None = None) -> list[DatasetType]:
        """Registered dataset types whose names match the glob ``pattern``."""
        with self._db.read() as conn:
            types = self.datasets.query_types(conn)
        return [t for t in types if pattern is None or fnmatch.fnmatchcase(t.name, pattern)]
