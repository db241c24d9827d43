"""The wire format shared by the butler server and its client (no web framework here).

Requests are pydantic models (the server validates them, the client builds them).
Query results travel as *pages* of columns, not of row objects: a 100,000-row dataset
query is a few lists of ints/strings and one hex string of UUIDs, which the standard
library's C JSON codec turns into bytes and back at memory speed.

A page of datasets looks like::

    {"kind": "datasets", "dataset_type": {...}, "total": 2, "offset": 0,
     "runs": ["HSC/raw/all"], "run": [0, 0], "ids": "<32 hex digits per row>",
     "columns": {"instrument": ["HSC", "HSC"], "exposure": [1012, 1014], ...},
     "next": "<cursor>" | null}

Errors are ``{"error": {"type": "<rc2_platform.errors class name>", "message": "..."}}``.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import itertools
import json
import operator
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rc2_platform.core import DataCoordinate, DatasetRef, DatasetType, Timespan

#: Version of this format; the server announces it, the client checks it.
API_VERSION = 1

#: Dimension values and bind values that may travel (JSON scalars).
Scalar = int | float | str | bool
BindValue = Scalar | list[Scalar]


_RUN = operator.attrgetter("run")
_ID = operator.attrgetter("id")
_HEX = operator.attrgetter("hex")
_DATA_ID = operator.attrgetter("data_id")
_VALUES = operator.attrgetter("values_tuple")
_HEX_DIGITS = re.compile(r"[0-9a-f]*")
_new = object.__new__
_set = object.__setattr__


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WhereClause(_Request):
    """The where-expression and its bind values (parsed by the registry's parser)."""

    where: str = Field(
        default="", max_length=20_000, description="Where-expression, as in the CLI."
    )
    bind: dict[str, BindValue] = Field(
        default_factory=dict, description="Values of the :name parameters of `where`."
    )


class DatasetQuery(WhereClause):
    """``POST /{repo}/v1/query/datasets``."""

    dataset_type: str = Field(min_length=1, max_length=256)
    collections: list[str] = Field(min_length=1, max_length=1000)
    find_first: bool = True
    page_rows: int | None = Field(default=None, ge=1, description="Rows per page (server caps it).")


class DataIdQuery(WhereClause):
    """``POST /{repo}/v1/query/data-ids``."""

    dimensions: list[str] = Field(min_length=1, max_length=50)
    page_rows: int | None = Field(default=None, ge=1)


class RecordQuery(WhereClause):
    """``POST /{repo}/v1/query/dimension-records``."""

    element: str = Field(min_length=1, max_length=256)
    page_rows: int | None = Field(default=None, ge=1)


class FindDataset(_Request):
    """``POST /{repo}/v1/find-dataset``: find-first lookup of one data ID."""

    dataset_type: str = Field(min_length=1, max_length=256)
    data_id: dict[str, Scalar]
    collections: list[str] = Field(min_length=1, max_length=1000)
    timespan: tuple[int, int] | None = Field(
        default=None, description="[begin, end) in TAI nanoseconds, for calibration lookups."
    )


# --- values -------------------------------------------------------------------------------


def dataset_type_to_json(dt: DatasetType) -> dict[str, Any]:
    """A dataset type as a JSON object."""
    return {
        "name": dt.name,
        "dimensions": list(dt.dimensions),
        "storage_class": dt.storage_class,
        "calibration": dt.is_calibration,
    }


def dataset_type_from_json(data: Mapping[str, Any]) -> DatasetType:
    """Inverse of :func:`dataset_type_to_json`."""
    return DatasetType(
        data["name"], tuple(data["dimensions"]), data["storage_class"], bool(data["calibration"])
    )


def ref_to_json(ref: DatasetRef) -> dict[str, Any]:
    """One dataset ref as a JSON object (the dataset type by name)."""
    return {
        "id": str(ref.id),
        "dataset_type": dataset_type_to_json(ref.dataset_type),
        "run": ref.run,
        "data_id": ref.data_id.to_dict(),
    }


def ref_from_json(data: Mapping[str, Any]) -> DatasetRef:
    """Inverse of :func:`ref_to_json`."""
    dt = dataset_type_from_json(data["dataset_type"])
    values = tuple(data["data_id"][d] for d in dt.dimensions)
    return DatasetRef(dt, DataCoordinate(dt.dimensions, values), data["run"], uuid.UUID(data["id"]))


def region_to_text(region: Any) -> str | None:
    """An lsst.sphgeom region as base64 of its own encoding."""
    return None if region is None else base64.b64encode(bytes(region.encode())).decode("ascii")


def region_from_text(text: str | None) -> Any:
    """Inverse of :func:`region_to_text`."""
    if text is None:
        return None
    from lsst.sphgeom import Region

    return Region.decode(base64.b64decode(text))


def timespan_to_json(ts: Timespan | None) -> list[int] | None:
    """A timespan as [begin_nsec, end_nsec]."""
    return None if ts is None else [ts.begin_nsec, ts.end_nsec]


def timespan_from_json(value: Sequence[int] | None) -> Timespan | None:
    """Inverse of :func:`timespan_to_json`."""
    return None if value is None else Timespan(int(value[0]), int(value[1]))


# --- pages ------------------------------------------------------------------------------------


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes (NaN allowed: dimension metadata may hold it)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while (de)constructing ~100k small objects.

    None of them form cycles, and the collections the allocations trigger would scan
    the whole heap again and again.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def datasets_columns(refs: Sequence[DatasetRef], dimensions: Sequence[str]) -> dict[str, Any]:
    """The columns of a dataset page: runs (indexed), ids (hex), one list per dimension."""
    with paused_gc():
        run_names = list(map(_RUN, refs))
        runs = {name: i for i, name in enumerate(dict.fromkeys(run_names))}
        value_rows = list(map(_VALUES, map(_DATA_ID, refs)))
        columns: dict[str, list[Any]] = {d: [] for d in dimensions}
        if value_rows:
            columns = {
                d: list(col)
                for d, col in zip(dimensions, zip(*value_rows, strict=True), strict=True)
            }
        return {
            "runs": list(runs),
            "run": list(map(runs.__getitem__, run_names)),
            "ids": "".join(map(_HEX, map(_ID, refs))),
            "columns": columns,
        }


def empty_dataset_columns(dimensions: Sequence[str]) -> dict[str, Any]:
    """The columns of a dataset page without rows."""
    return {"runs": [], "run": [], "ids": "", "columns": {d: [] for d in dimensions}}


def columns_from_found(found: Any, readable: Callable[[str], bool]) -> dict[str, Any]:
    """The columns of a dataset page from a registry column search, readable RUNs only.

    ``found`` is a :class:`rc2_platform.registry.DatasetColumnsFound` (typed loosely so
    that this module needs nothing of the registry); ``readable`` says whether a RUN
    may be shown. Rows of RUNs that may not are left out, ids and data IDs alike.
    """
    dims = found.dataset_type.dimensions
    keep_runs = [readable(r) for r in found.runs]
    keys, run, ids = found.keys, found.run, found.ids
    if not all(keep_runs):
        keep = [keep_runs[i] for i in run]
        keys = list(itertools.compress(keys, keep))
        run = list(itertools.compress(run, keep))
        ids = "".join(itertools.compress((ids[i : i + 32] for i in range(0, len(ids), 32)), keep))
    runs = [r for r, ok in zip(found.runs, keep_runs, strict=True) if ok]
    renumber = {old: new for new, old in enumerate(i for i, ok in enumerate(keep_runs) if ok)}
    if len(renumber) != len(found.runs):
        run = list(map(renumber.__getitem__, run))
    with paused_gc():
        columns: dict[str, list[Any]] = {d: [] for d in dims}
        if keys:
            columns = {d: list(col) for d, col in zip(dims, zip(*keys, strict=True), strict=True)}
    return {"runs": runs, "run": run, "ids": ids, "columns": columns}


def _uuid_from_int(value: int) -> uuid.UUID:
    """A UUID from its integer, without ``uuid.UUID.__init__``'s argument parsing."""
    u = _new(uuid.UUID)
    _set(u, "int", value)
    _set(u, "is_safe", uuid.SafeUUID.unknown)
    return u


def refs_from_page(page: Mapping[str, Any], dt: DatasetType) -> list[DatasetRef]:
    """The refs of one dataset page (the reverse of :func:`datasets_columns`)."""
    dims = dt.dimensions
    hex_ids: str = page["ids"]
    if len(hex_ids) % 32 or not _HEX_DIGITS.fullmatch(hex_ids):
        raise ValueError("a dataset page's ids are not 32 hex digits each")
    with paused_gc():
        ints = [int(hex_ids[i : i + 32], 16) for i in range(0, len(hex_ids), 32)]
        ids = list(map(_uuid_from_int, ints))
        runs = page["runs"]
        run_names = list(map(runs.__getitem__, page["run"]))
        columns = [page["columns"][d] for d in dims]
        keys = list(zip(*columns, strict=True)) if dims else [()] * len(ids)
        coords = DataCoordinate.from_value_rows(dims, keys)
        if not len(coords) == len(run_names) == len(ids):
            raise ValueError("a dataset page's columns differ in length")
        return list(map(DatasetRef, itertools.repeat(dt), coords, run_names, ids))


def data_id_columns(rows: Iterable[DataCoordinate], dimensions: Sequence[str]) -> dict[str, Any]:
    """Columns of a data ID page."""
    value_rows = [d.values_tuple for d in rows]
    if not value_rows:
        return {d: [] for d in dimensions}
    return {d: list(col) for d, col in zip(dimensions, zip(*value_rows, strict=True), strict=True)}


def data_ids_from_page(page: Mapping[str, Any]) -> list[DataCoordinate]:
    """The data IDs of one data ID page."""
    dims = tuple(page["dimensions"])
    columns = [page["columns"][d] for d in dims]
    keys = list(zip(*columns, strict=True))
    return DataCoordinate.from_value_rows(dims, keys)


def record_columns(records: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> dict[str, Any]:
    """Columns of a dimension-record page (regions base64, timespans [begin, end])."""
    out: dict[str, list[Any]] = {c: [r[c] for r in records] for c in columns}
    if records and "region" in records[0]:
        out["region"] = [region_to_text(r["region"]) for r in records]
    if records and "timespan" in records[0]:
        out["timespan"] = [timespan_to_json(r["timespan"]) for r in records]
    return out


def records_from_page(page: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The records of one dimension-record page, with Region and Timespan objects."""
    cols: dict[str, list[Any]] = dict(page["columns"])
    if "timespan" in cols:
        cols["timespan"] = [timespan_from_json(v) for v in cols["timespan"]]
    if "region" in cols:
        cols["region"] = [region_from_text(v) for v in cols["region"]]
    names = list(cols)
    return [dict(zip(names, row, strict=True)) for row in zip(*cols.values(), strict=True)]
