"""RemoteButler: the butler's read API against a butler server.

>>> butler = RemoteButler("http://127.0.0.1:8080/rc2", token=os.environ["RC2_TOKEN"])  # doctest: +SKIP
>>> refs = butler.query_datasets("raw", collections="HSC/raw/all", where="exposure = 1012")
>>> image = butler.get(refs[0])

The method names, arguments, return types and exceptions are those of
:class:`rc2_platform.butler.Butler` (and of its ``registry`` for the read methods the
CLI uses), so code written for a local repository runs unchanged against a URL.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rc2_platform.core import CollectionType, DataCoordinate, DatasetRef, DatasetType, Timespan
from rc2_platform.datastore import get_formatter
from rc2_platform.errors import DatasetNotFoundError, FormatterError, RemoteError
from rc2_platform.registry.dimensions import DimensionUniverse
from rc2_platform.remote import wire
from rc2_platform.remote.http import Transport

CollectionArg = str | Sequence[str]

#: How long the rows of a collection listing answer type and chain lookups.
_LISTING_SECONDS = 10.0


#: Rows per dataset page the client asks for: small enough that the server builds the next
#: page while this client decodes one (see ``Http.pages``), large enough that requests
#: stay few (5 for 100,000 rows).
PIPELINE_PAGE_ROWS = 20_000


def _names(collections: CollectionArg) -> list[str]:
    return [collections] if isinstance(collections, str) else list(collections)


class RemoteRegistry:
    """The read methods of :class:`rc2_platform.registry.Registry`, over HTTP."""

    def __init__(self, transport: Transport, universe: DimensionUniverse) -> None:
        self._http = transport
        self.universe = universe
        self._types: dict[str, DatasetType] = {}
        # Rows of the last collection listing: a listing followed by per-name lookups
        # (what `rc2 collections list` does) costs one request, not one per collection.
        self._collection_rows: dict[str, dict[str, Any]] = {}
        self._collection_rows_until = 0.0

    # --- collections ----------------------------------------------------------------------

    def query_collections(
        self, pattern: str | None = None, types: Iterable[CollectionType] | None = None
    ) -> list[str]:
        """Readable collection names matching a glob and types, sorted."""
        wanted = None if types is None else {t.name for t in types}
        rows = self._http.get("collections", pattern=pattern)
        self._collection_rows = {r["name"]: r for r in rows}
        self._collection_rows_until = time.monotonic() + _LISTING_SECONDS
        return sorted(r["name"] for r in rows if wanted is None or r["type"] in wanted)

    def _collection(self, name: str) -> dict[str, Any]:
        fresh = time.monotonic() < self._collection_rows_until
        row = self._collection_rows.get(name) if fresh else None
        if row is None:
            row = self._http.get("collection", name=name)
        return row

    def get_collection_type(self, name: str) -> CollectionType:
        """The type of a collection (MissingCollectionError if absent)."""
        return CollectionType[self._collection(name)["type"]]

    def get_collection_chain(self, parent: str) -> list[str]:
        """The readable direct children of a CHAINED collection."""
        return list(self._collection(parent)["children"])

    # --- dataset types -------------------------------------------------------------------

    def get_dataset_type(self, name: str) -> DatasetType:
        """A registered dataset type (MissingDatasetTypeError otherwise)."""
        dt = self._types.get(name)
        if dt is None:
            dt = wire.dataset_type_from_json(self._http.get(f"dataset-types/{name}"))
            self._types[name] = dt
        return dt

    def query_dataset_types(self, pattern: str | None = None) -> list[DatasetType]:
        """Registered dataset types matching a glob."""
        types = [
            wire.dataset_type_from_json(t) for t in self._http.get("dataset-types", pattern=pattern)
        ]
        self._types.update((t.name, t) for t in types)
        return types

    # --- datasets ---------------------------------------------------------------------------

    def query_datasets(
        self,
        dataset_type: str | DatasetType,
        collections: CollectionArg,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        find_first: bool = True,
    ) -> list[DatasetRef]:
        """Datasets of a type in ``collections`` matching ``where`` (readable RUNs only)."""
        name = dataset_type if isinstance(dataset_type, str) else dataset_type.name
        query = wire.DatasetQuery(
            dataset_type=name,
            collections=_names(collections),
            where=where,
            bind=dict(bind or {}),
            find_first=find_first,
            page_rows=PIPELINE_PAGE_ROWS,
        )
        refs: list[DatasetRef] = []
        dt: DatasetType | None = None
        for page in self._http.pages("query/datasets", query.model_dump(exclude_none=True)):
            if dt is None:
                dt = wire.dataset_type_from_json(page["dataset_type"])
                self._types[dt.name] = dt
            refs.extend(wire.refs_from_page(page, dt))
        return refs

    def find_dataset(
        self,
        dataset_type: str | DatasetType,
        data_id: Mapping[str, Any],
        collections: CollectionArg,
        timespan: Timespan | None = None,
    ) -> DatasetRef | None:
        """Find-first lookup of one data ID (None if not found)."""
        name = dataset_type if isinstance(dataset_type, str) else dataset_type.name
        query = wire.FindDataset(
            dataset_type=name,
            data_id=dict(data_id),
            collections=_names(collections),
            timespan=None if timespan is None else (timespan.begin_nsec, timespan.end_nsec),
        )
        try:
            return wire.ref_from_json(self._http.post("find-dataset", query.model_dump()))
        except DatasetNotFoundError:
            return None

    def get_dataset(self, id: uuid.UUID | str) -> DatasetRef:
        """The ref of a readable dataset (DatasetNotFoundError otherwise)."""
        return wire.ref_from_json(self._http.get(f"datasets/{id}")["ref"])

    # --- data IDs and records -------------------------------------------------------------------

    def query_data_ids(
        self, dimensions: Iterable[str], where: str = "", bind: Mapping[str, Any] | None = None
    ) -> list[DataCoordinate]:
        """Distinct data IDs of ``dimensions`` matching ``where``, sorted by value."""
        query = wire.DataIdQuery(dimensions=list(dimensions), where=where, bind=dict(bind or {}))
        out: list[DataCoordinate] = []
        for page in self._http.pages("query/data-ids", query.model_dump(exclude_none=True)):
            out.extend(wire.data_ids_from_page(page))
        return out

    def query_dimension_records(
        self, element: str, where: str = "", bind: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Records of ``element`` matching ``where`` (Region and Timespan objects)."""
        query = wire.RecordQuery(element=element, where=where, bind=dict(bind or {}))
        out: list[dict[str, Any]] = []
        for page in self._http.pages(
            "query/dimension-records", query.model_dump(exclude_none=True)
        ):
            out.extend(wire.records_from_page(page))
        return out


class RemoteButler:
    """A repository served by ``rc2 serve``, with the butler's read API.

    Parameters
    ----------
    url : str
        The repository URL, ``http(s)://HOST:PORT/REPO``.
    token : str, optional
        Bearer token (``rc2 tokens create``); default ``$RC2_TOKEN``; none: anonymous.
    collections : str or sequence of str, optional
        Default collections searched by :meth:`get` and the queries.
    timeout : float
        Seconds to wait for the server.

    Raises
    ------
    RemoteError
        The server cannot be reached or speaks another API version.
    AuthenticationError
        The repository needs a token and none (or no valid one) was given.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        collections: CollectionArg | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = Transport(self.url, token, timeout)
        try:
            info = self._http.get("info")
        except BaseException:
            self._http.close()
            raise
        if info.get("api_version") != wire.API_VERSION:
            self._http.close()
            raise RemoteError(
                f"the server at {self.url} speaks API version {info.get('api_version')}, this "
                f"client version {wire.API_VERSION}; use a matching rc2_platform release"
            )
        self.limits: dict[str, Any] = dict(info.get("limits", {}))
        self.registry = RemoteRegistry(self._http, DimensionUniverse.from_yaml(info["universe"]))
        self.collections: list[str] = [] if collections is None else _names(collections)

    @classmethod
    def from_url(cls, url: str, token: str | None = None, **kwargs: Any) -> RemoteButler:
        """Same as the constructor (the name Rubin's butler uses)."""
        return cls(url, token=token, **kwargs)

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> RemoteButler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteButler({self.url!r})"

    # --- queries ------------------------------------------------------------------------------

    def _collections(self, collections: CollectionArg | None) -> list[str]:
        if collections is None:
            if not self.collections:
                raise DatasetNotFoundError(
                    "no collections given to search; pass --collections (or collections=...)"
                )
            return self.collections
        return _names(collections)

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

    # --- single datasets -------------------------------------------------------------------

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
        colls = self._collections(collections)
        ref = self.registry.find_dataset(dataset_type, data_id or {}, colls, timespan)
        if ref is None:
            name = dataset_type if isinstance(dataset_type, str) else dataset_type.name
            raise DatasetNotFoundError(
                f"no {name} dataset with data ID {dict(data_id or {})} in collections {colls}"
            )
        return ref

    def file_link(self, ref: DatasetRef) -> dict[str, Any]:
        """A signed, short-lived link to a dataset's file and its description."""
        info: dict[str, Any] = self._http.get(f"datasets/{ref.id}/file")
        return info

    def get(
        self,
        dataset_type: str | DatasetType | DatasetRef,
        data_id: Mapping[str, Any] | None = None,
        *,
        collections: CollectionArg | None = None,
        timespan: Timespan | None = None,
    ) -> Any:
        """Read one dataset, given its ref, or its type and data ID (find-first search)."""
        ref = self.resolve(dataset_type, data_id, collections=collections, timespan=timespan)
        link = self.file_link(ref)
        with tempfile.TemporaryDirectory(prefix="rc2-get-") as tmp:
            path = Path(tmp) / f"{ref.id.hex}{link['extension']}"
            self._http.download(link["url"], path)
            try:
                return get_formatter(link["formatter"]).read(path)
            except FormatterError:
                raise
            except Exception as exc:
                raise FormatterError(f"could not read the file of {ref}: {exc}") from exc

    def retrieve(self, ref: DatasetRef, target: Path | str) -> Path:
        """Download a dataset's file into folder ``target``; returns the file's path."""
        link = self.file_link(ref)
        folder = Path(target)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{ref.dataset_type.name}_{ref.id.hex}{link['extension']}"
        self._http.download(link["url"], path)
        return path

    def exists(
        self,
        dataset_type: str | DatasetType | DatasetRef,
        data_id: Mapping[str, Any] | None = None,
        *,
        collections: CollectionArg | None = None,
    ) -> bool:
        """Whether the dataset is registered, readable, and its file is present."""
        try:
            ref = self.resolve(dataset_type, data_id, collections=collections)
            return bool(self._http.get(f"datasets/{ref.id}")["stored"])
        except DatasetNotFoundError:
            return False
