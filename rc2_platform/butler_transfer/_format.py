"""The export file: versioned YAML; bulk rows as JSON lines inside block literals.

See ``docs/data-management.md`` for the format. Each group of rows (a dimension
element's records, a dataset type's datasets in one RUN, a collection's members) has a
``columns`` list and ``rows``: a YAML block literal holding one JSON array per line, so
the file stays readable and diffable while 50,000 rows load in well under a second
(orjson per line instead of one YAML node per value). Regions are base64 of
``lsst.sphgeom.Region.encode()``, time spans ``[begin, end]`` in TAI nanoseconds.
"""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path
from typing import Any

import orjson
import yaml

from rc2_platform.butler_transfer._bundle import Bundle, CollectionEntry, UniverseTag
from rc2_platform.core import CollectionType, DataCoordinate, DatasetRef, DatasetType, Timespan
from rc2_platform.core.datastore_record import DatastoreRecord
from rc2_platform.core.yaml_safe import YamlError, load_yaml
from rc2_platform.errors import ExportFormatError

#: Version of the file format this code writes and reads.
FORMAT_VERSION = 1
#: The key naming the format (the first one of every export file).
FORMAT_KEY = "rc2_export"

_BaseDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Rows(str):
    """Rows as JSON lines, written as a YAML block literal (``|``)."""

    __slots__ = ()


def _rows_text(rows: Any) -> _Rows:
    dumps = orjson.dumps
    return _Rows(b"\n".join(map(dumps, rows)).decode() + "\n")


def _parse_rows(text: Any, where: str) -> list[Any]:
    if isinstance(text, list):  # rows written as a YAML list also read
        return text
    if not isinstance(text, str):
        raise ExportFormatError(f"{where}: rows must be JSON lines in a block literal")
    try:
        return orjson.loads("[" + ",".join(line for line in text.splitlines() if line) + "]")
    except orjson.JSONDecodeError as exc:
        raise ExportFormatError(f"{where}: a row is not valid JSON ({exc})") from None


class _Dumper(_BaseDumper):  # type: ignore[misc,valid-type]
    """The safe (libyaml) dumper, writing :class:`_Rows` as block literals."""


_Dumper.add_representer(
    _Rows, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", str(v), style="|")
)


def _encode_value(value: Any) -> Any:
    if isinstance(value, Timespan):
        return [value.begin_nsec, value.end_nsec]
    if hasattr(value, "encode") and not isinstance(value, str):
        return base64.b64encode(value.encode()).decode()
    return value


def _decode_value(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column == "timespan":
        return Timespan(value[0], value[1])
    if column == "region":
        import lsst.sphgeom as sg

        return sg.Region.decode(base64.b64decode(value))
    return value


def to_document(bundle: Bundle, files_root: str | None) -> dict[str, Any]:
    """The YAML document of ``bundle``; file paths are relative to ``files_root``."""
    doc: dict[str, Any] = {
        FORMAT_KEY: FORMAT_VERSION,
        "schema_version": bundle.schema_version,
        "universe": {
            "namespace": bundle.universe.namespace,
            "version": bundle.universe.version,
            "digest": bundle.universe.digest,
        },
        "files_root": files_root,
        "dimension_records": {},
        "dataset_types": [
            {
                "name": t.name,
                "dimensions": list(t.dimensions),
                "storage_class": t.storage_class,
                "is_calibration": t.is_calibration,
            }
            for t in bundle.dataset_types
        ],
        "collections": [
            {"name": c.name, "type": c.type.name}
            | ({"children": c.children} if c.type is CollectionType.CHAINED else {})
            for c in bundle.collections
        ],
        "datasets": [],
        "tagged": [
            {"collection": k, "columns": ["id"], "rows": _rows_text([str(i)] for i in v)}
            for k, v in bundle.tagged.items()
        ],
        "calibrations": [
            {
                "collection": k,
                "columns": ["id", "valid_begin", "valid_end"],
                "rows": _rows_text([str(i), t.begin_nsec, t.end_nsec] for i, t in v),
            }
            for k, v in bundle.validity.items()
        ],
    }
    for element, records in bundle.records.items():
        columns = list(records[0])
        doc["dimension_records"][element] = {
            "columns": columns,
            "rows": _rows_text([_encode_value(r[c]) for c in columns] for r in records),
        }
    groups: dict[tuple[str, str], list[DatasetRef]] = {}
    for ref in bundle.refs:
        groups.setdefault((ref.dataset_type.name, ref.run), []).append(ref)
    files = bundle.files
    for (type_name, run), refs in groups.items():
        dims = list(refs[0].data_id.dimensions)
        rows = []
        for ref in refs:
            rec = files.get(ref.id)
            file = [rec.path, rec.formatter, rec.file_size] if rec is not None else [None] * 3
            rows.append([str(ref.id), *ref.data_id.values_tuple, *file])
        doc["datasets"].append(
            {
                "dataset_type": type_name,
                "run": run,
                "columns": ["id", *dims, "path", "formatter", "file_size"],
                "rows": _rows_text(rows),
            }
        )
    return doc


def write_file(doc: dict[str, Any], path: Path) -> None:
    """Write the document to ``path`` atomically (temporary file, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        fh.write(f"# rc2 export file, format version {FORMAT_VERSION} (docs/data-management.md)\n")
        yaml.dump(doc, fh, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=1000)
    os.replace(tmp, path)


def read_file(path: Path) -> dict[str, Any]:
    """Read an export file; refuse anything that is not one of this format version."""
    try:
        with open(path) as fh:
            doc = load_yaml(fh, str(path))
    except YamlError as exc:
        raise ExportFormatError(str(exc)) from None
    if not isinstance(doc, dict) or FORMAT_KEY not in doc:
        raise ExportFormatError(
            f"{path} is not an rc2 export file (no {FORMAT_KEY!r} key); write one with `rc2 export`"
        )
    if doc[FORMAT_KEY] != FORMAT_VERSION:
        raise ExportFormatError(
            f"{path} has export format version {doc[FORMAT_KEY]}, this software reads "
            f"version {FORMAT_VERSION}; export it again with a matching rc2_platform release"
        )
    return doc


def check_compatible(doc: dict[str, Any], path: Path, universe: UniverseTag, schema: str) -> None:
    """Refuse a file written for another dimension universe or registry schema version."""
    found = UniverseTag(**doc["universe"])
    if found.digest != universe.digest:
        raise ExportFormatError(
            f"{path} was written for dimension universe {found}, but the repository has "
            f"{universe}; migrate the older side (`rc2 migrate`) or export again from a "
            "repository of the same universe"
        )
    if doc["schema_version"] != schema:
        raise ExportFormatError(
            f"{path} was written by registry schema {doc['schema_version']}, but the repository "
            f"has schema {schema}; migrate the older side with `rc2 migrate` and export again"
        )


def from_document(doc: dict[str, Any], universe: UniverseTag) -> Bundle:
    """The bundle a (checked) document describes."""
    bundle = Bundle(universe, doc["schema_version"])
    for element, group in (doc.get("dimension_records") or {}).items():
        columns = group["columns"]
        bundle.records[element] = [
            {c: _decode_value(c, v) for c, v in zip(columns, row, strict=True)}
            for row in _parse_rows(group["rows"], f"dimension_records.{element}")
        ]
    types = {
        t["name"]: DatasetType(
            t["name"], tuple(t["dimensions"]), t["storage_class"], bool(t["is_calibration"])
        )
        for t in doc.get("dataset_types") or []
    }
    bundle.dataset_types = list(types.values())
    bundle.collections = [
        CollectionEntry(c["name"], CollectionType[c["type"]], list(c.get("children", [])))
        for c in doc.get("collections") or []
    ]
    for group in doc.get("datasets") or []:
        dt = types[group["dataset_type"]]
        run = group["run"]
        n_dims = len(group["columns"]) - 4
        dims = tuple(group["columns"][1 : 1 + n_dims])
        rows = _parse_rows(group["rows"], f"datasets of {dt.name} in {run}")
        ids = [uuid.UUID(r[0]) for r in rows]
        coords = DataCoordinate.from_value_rows(dims, [tuple(r[1 : 1 + n_dims]) for r in rows])
        for row, rid, coord in zip(rows, ids, coords, strict=True):
            bundle.refs.append(DatasetRef(dt, coord, run, rid))
            if row[1 + n_dims] is not None:
                bundle.files[rid] = DatastoreRecord(
                    rid, row[1 + n_dims], row[2 + n_dims], dt.storage_class, row[3 + n_dims]
                )
    bundle.tagged = {
        g["collection"]: [uuid.UUID(r[0]) for r in _parse_rows(g["rows"], g["collection"])]
        for g in doc.get("tagged") or []
    }
    bundle.validity = {
        g["collection"]: [
            (uuid.UUID(i), Timespan(b, e)) for i, b, e in _parse_rows(g["rows"], g["collection"])
        ]
        for g in doc.get("calibrations") or []
    }
    return bundle
