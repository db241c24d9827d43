"""What the server does for one repository, without any web framework.

Every method takes the admitted :class:`~rc2_platform.server.access.Principal` and
applies the access rules of :mod:`rc2_platform.server.access`; queries run through the
butler's own methods (the where-expression is parsed by the registry's parser) inside the
operator's limits (rows, database time, concurrent queries).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import rc2_platform.remote.wire as wire
from rc2_platform.butler import Butler
from rc2_platform.core import CollectionType, DatasetRef, DatasetType, Timespan
from rc2_platform.errors import (
    CollectionTypeError,
    DatasetNotFoundError,
    FileNotInDatastoreError,
    QueryLimitError,
    ServerBusyError,
)
from rc2_platform.registry import DatabaseError, DatasetColumnsFound
from rc2_platform.registry.limits import is_timeout, query_deadline
from rc2_platform.server.access import Principal
from rc2_platform.server.config import LimitsConfig
from rc2_platform.server.results import QueryResult, ResultCache
from rc2_platform.server.signing import FileGrant, UrlSigner

_log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class StoredFile:
    """A dataset's file as the server sends it."""

    path: Path
    filename: str
    size: int


class RepositoryService:
    """The read API of one repository.

    Parameters
    ----------
    name : str
        The repository's name in URLs.
    butler : Butler
        The opened repository (owned by the service: :meth:`close` closes it).
    limits : LimitsConfig
        The operator's limits.
    signer : UrlSigner
        Signs file links.
    """

    def __init__(self, name: str, butler: Butler, limits: LimitsConfig, signer: UrlSigner):
        self.name = name
        self.butler = butler
        self.limits = limits
        self.signer = signer
        self.results = ResultCache(limits.cursor_rows, limits.cursor_seconds)
        self._slots = threading.BoundedSemaphore(limits.concurrent_queries)
        butler.registry.limit_statement_time(limits.query_seconds)

    def close(self) -> None:
        """Close the repository."""
        self.butler.close()

    # --- limits ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _query_slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self.limits.queue_seconds):
            raise ServerBusyError(
                f"the server is already running {self.limits.concurrent_queries} queries and "
                f"none finished within {self.limits.queue_seconds:.0f} s; retry shortly"
            )
        try:
            with query_deadline(self.limits.query_seconds):
                yield
        except DatabaseError as exc:
            if is_timeout(exc):
                raise QueryLimitError(
                    f"the query ran longer than this server's limit of "
                    f"{self.limits.query_seconds:g} s of database time; narrow it with --where "
                    "(e.g. a tract, visit or band) or ask the operator"
                ) from None
            raise
        finally:
            self._slots.release()

    def _run(self, func: Callable[[], T]) -> T:
        with self._query_slot():
            return func()

    def _check_rows(self, n: int) -> None:
        if n > self.limits.max_rows:
            raise QueryLimitError(
                f"the query matched {n} rows, more than this server's limit of "
                f"{self.limits.max_rows}; narrow it with --where (e.g. a tract, visit or band)"
            )

    def _page_rows(self, asked: int | None) -> int:
        return min(asked or self.limits.page_rows, self.limits.page_rows)

    # --- metadata --------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """What a client needs first: the API version and the dimension universe."""
        return {
            "name": self.name,
            "api_version": wire.API_VERSION,
            "universe": self.butler.registry.universe.to_yaml(),
            "limits": {
                "max_rows": self.limits.max_rows,
                "page_rows": self.limits.page_rows,
                "query_seconds": self.limits.query_seconds,
            },
        }

    def collections(
        self, who: Principal, pattern: str | None, type_name: str | None
    ) -> list[dict[str, Any]]:
        """The readable collections matching a glob and type, with readable chain members."""
        reg = self.butler.registry
        types = None if type_name is None else [_collection_type(type_name)]
        rows = []
        for name in who.readable(reg.query_collections(pattern, types)):
            rows.append(self._collection_row(who, name))
        return rows

    def collection(self, who: Principal, name: str) -> dict[str, Any]:
        """One collection (403 outside the scopes, 404 if absent)."""
        who.require([name])
        return self._collection_row(who, name)

    def _collection_row(self, who: Principal, name: str) -> dict[str, Any]:
        reg = self.butler.registry
        ctype = reg.get_collection_type(name)
        children = reg.get_collection_chain(name) if ctype is CollectionType.CHAINED else []
        return {"name": name, "type": ctype.name, "children": who.readable(children)}

    def dataset_types(self, pattern: str | None) -> list[dict[str, Any]]:
        """Registered dataset types (metadata: readable by every admitted caller)."""
        types = self.butler.registry.query_dataset_types(pattern)
        return [wire.dataset_type_to_json(t) for t in sorted(types, key=lambda t: t.name)]

    def dataset_type(self, name: str) -> dict[str, Any]:
        """One dataset type (404 if not registered)."""
        return wire.dataset_type_to_json(self.butler.registry.get_dataset_type(name))

    # --- queries ---------------------------------------------------------------------------

    def _search_path(self, who: Principal, collections: list[str]) -> list[str]:
        """The readable non-chained collections searched for ``collections``, in order."""
        who.require(collections)
        flat = self.butler.registry.flatten_collections(collections)
        return who.readable(flat)

    def query_datasets(self, who: Principal, q: wire.DatasetQuery) -> dict[str, Any]:
        """First page of the datasets a query finds (readable RUNs only)."""

        def work() -> tuple[DatasetType, DatasetColumnsFound | None]:
            dt = self.butler.registry.get_dataset_type(q.dataset_type)
            path = self._search_path(who, q.collections)
            if not path:
                return dt, None
            found = self.butler.registry.query_dataset_columns(
                dt, path, q.where, q.bind, find_first=q.find_first
            )
            return dt, found

        dt, found = self._run(work)
        cols = wire.empty_dataset_columns(dt.dimensions)
        if found is not None:
            cols = wire.columns_from_found(found, who.can_read)
        rows = len(cols["run"])
        self._check_rows(rows)
        result = QueryResult(
            header={
                "kind": "datasets",
                "dataset_type": wire.dataset_type_to_json(dt),
                "runs": cols["runs"],
            },
            columns=cols["columns"],
            rows=rows,
            arrays={"run": cols["run"]},
            ids=cols["ids"],
        )
        return self.results.first_page(who.id, result, self._page_rows(q.page_rows))

    def query_data_ids(self, who: Principal, q: wire.DataIdQuery) -> dict[str, Any]:
        """First page of the data IDs of ``q.dimensions`` matching ``q.where``."""
        reg = self.butler.registry
        ids = self._run(lambda: reg.query_data_ids(q.dimensions, q.where, q.bind))
        self._check_rows(len(ids))
        dims = list(reg.universe.required(q.dimensions))
        result = QueryResult(
            header={"kind": "data_ids", "dimensions": dims},
            columns=wire.data_id_columns(ids, dims),
            rows=len(ids),
        )
        return self.results.first_page(who.id, result, self._page_rows(q.page_rows))

    def query_dimension_records(self, who: Principal, q: wire.RecordQuery) -> dict[str, Any]:
        """First page of the records of ``q.element`` matching ``q.where``."""
        reg = self.butler.registry
        records = self._run(lambda: reg.query_dimension_records(q.element, q.where, q.bind))
        self._check_rows(len(records))
        columns = list(reg.universe[q.element].columns)
        result = QueryResult(
            header={"kind": "dimension_records", "element": q.element},
            columns=wire.record_columns(records, columns),
            rows=len(records),
        )
        return self.results.first_page(who.id, result, self._page_rows(q.page_rows))

    def next_page(self, who: Principal, cursor: str) -> dict[str, Any]:
        """A later page of a kept result."""
        return self.results.next_page(who.id, cursor)

    # --- single datasets -------------------------------------------------------------------

    def find_dataset(self, who: Principal, q: wire.FindDataset) -> dict[str, Any]:
        """Find-first lookup of one data ID (404 when none is readable)."""
        timespan = None if q.timespan is None else Timespan(*q.timespan)

        def work() -> DatasetRef | None:
            path = self._search_path(who, q.collections)
            if not path:
                return None
            return self.butler.registry.find_dataset(q.dataset_type, q.data_id, path, timespan)

        ref = self._run(work)
        if ref is None or not who.can_read(ref.run):
            raise DatasetNotFoundError(
                f"no {q.dataset_type} dataset with data ID {q.data_id} in collections "
                f"{q.collections}"
            )
        return wire.ref_to_json(ref)

    def _readable_ref(self, who: Principal, dataset_id: str) -> DatasetRef:
        """The ref of a dataset id, the same 404 for absent and unreadable ones."""
        try:
            ref = self.butler.registry.get_dataset(uuid.UUID(dataset_id))
        except ValueError:
            ref = None
        except DatasetNotFoundError:
            ref = None
        if ref is None or not who.can_read(ref.run):
            if ref is not None:
                _log.warning(
                    "denied: %s asked for dataset %s of RUN %s outside its scopes",
                    who.describe(),
                    dataset_id,
                    ref.run,
                )
            raise DatasetNotFoundError(
                f"no dataset with id {dataset_id} readable in repository {self.name}"
            )
        return ref

    def dataset(self, who: Principal, dataset_id: str) -> dict[str, Any]:
        """A dataset's ref and whether its file is stored."""
        ref = self._readable_ref(who, dataset_id)
        record = self.butler.datastore_records([ref]).get(ref.id)
        stored = record is not None and self.butler.datastore.exists(ref, record)
        return {"ref": wire.ref_to_json(ref), "stored": stored}

    def file_grant(self, who: Principal, dataset_id: str) -> tuple[dict[str, Any], FileGrant, str]:
        """Describe a dataset's file and sign a short-lived grant to download it."""
        ref = self._readable_ref(who, dataset_id)
        record = self.butler.datastore_records([ref]).get(ref.id)
        if record is None or not self.butler.datastore.exists(ref, record):
            raise FileNotInDatastoreError(
                f"dataset {ref.id} ({ref.dataset_type.name} {ref.data_id.to_dict()} in "
                f"{ref.run}) is registered but has no stored file"
            )
        grant, sig = self.signer.sign(self.name, str(ref.id), who.id)
        info = {
            "ref": wire.ref_to_json(ref),
            "formatter": record.formatter,
            "storage_class": record.storage_class,
            "size": record.file_size,
            "extension": "".join(Path(record.path).suffixes),
            "expires": grant.expires,
        }
        return info, grant, sig

    def stored_file(self, who: Principal, dataset_id: str) -> StoredFile:
        """The file of a readable dataset (for a checked signed link)."""
        ref = self._readable_ref(who, dataset_id)
        record = self.butler.datastore_records([ref]).get(ref.id)
        if record is None:
            raise FileNotInDatastoreError(f"dataset {ref.id} has no stored file")
        path = self.butler.datastore.absolute(record)
        if not path.is_file():
            raise FileNotInDatastoreError(f"dataset {ref.id}'s file is missing on the server")
        filename = f"{ref.dataset_type.name}_{ref.id.hex}{''.join(Path(record.path).suffixes)}"
        return StoredFile(path, filename, path.stat().st_size)


def _collection_type(value: str) -> CollectionType:
    try:
        return CollectionType[value.upper()]
    except KeyError:
        raise CollectionTypeError(
            f"unknown collection type {value!r}; use one of {[t.name for t in CollectionType]}"
        ) from None
