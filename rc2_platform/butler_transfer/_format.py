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

from rc2_platform.butler_transfer._bundle import (
    Bundle,
    CollectionEntry,
    DatasetGroup,
    UniverseTag,
)
from rc2_platform.butler_transfer._schema import check_document, check_rows
from rc2_platform.core import CollectionType, DatasetType, Timespan
from rc2_platform.core.yaml_safe import YamlError, load_yaml
from rc2_platform.datastore.formatters import FORMATTERS
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


def dashed(hex_id: str) -> str:
    """A 32-hex-digit UUID in its usual text form (8-4-4-4-12)."""
    h = hex_id
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def hex_ids(ids: list[Any], where: str) -> list[str]:
    """UUID texts (dashes allowed) as 32 lower-case hex digits; ExportFormatError naming
    the first that is not one."""
    try:
        joined = "".join(ids).replace("-", "").lower()
        if len(joined) == 32 * len(ids):
            bytes.fromhex(joined)
            return [joined[k : k + 32] for k in range(0, len(joined), 32)]
    except (TypeError, ValueError):
        pass
    for value in ids:
        try:
            uuid.UUID(value)
        except (TypeError, ValueError, AttributeError):
            raise ExportFormatError(f"{where}: dataset id {value!r} is not a UUID") from None
    raise ExportFormatError(f"{where}: dataset ids are not all UUIDs")


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
            {"collection": k, "columns": ["id"], "rows": _rows_text([dashed(i)] for i in v)}
            for k, v in bundle.tagged.items()
        ],
        "calibrations": [
            {
                "collection": k,
                "columns": ["id", "valid_begin", "valid_end"],
                "rows": _rows_text([dashed(i), b, e] for i, b, e in v),
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
    for g in bundle.groups:
        dims = list(g.dataset_type.dimensions)
        ids = map(dashed, g.ids)
        keys = g.data_ids
        if g.paths is None:
            none3 = [None, None, None]
            rows: Any = ([i, *k, *none3] for i, k in zip(ids, keys, strict=True))
        else:
            assert g.formatters is not None and g.file_sizes is not None
            rows = (
                [i, *k, p, f, z]
                for i, k, p, f, z in zip(
                    ids, keys, g.paths, g.formatters, g.file_sizes, strict=True
                )
            )
        doc["datasets"].append(
            {
                "dataset_type": g.dataset_type.name,
                "run": g.run,
                "columns": ["id", *dims, "path", "formatter", "file_size"],
                "rows": _rows_text(rows),
            }
        )
    return doc


def write_file(doc: dict[str, Any], path: Path) -> None:
    """Write the document to ``path`` atomically (temporary file, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w") as fh:
            fh.write(
                f"# rc2 export file, format version {FORMAT_VERSION} (docs/data-management.md)\n"
            )
            yaml.dump(doc, fh, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=1000)
        os.replace(tmp, path)
    except BaseException:  # a full disk, Ctrl-C: leave no half-written temporary behind
        tmp.unlink(missing_ok=True)
        raise


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
    check_document(doc, path)
    return doc


def check_compatible(doc: dict[str, Any], path: Path, universe: UniverseTag, schema: str) -> None:
    """Refuse a file written for another dimension universe or a newer registry schema."""
    found = UniverseTag(**doc["universe"])
    if found.digest != universe.digest:
        raise ExportFormatError(
            f"{path} was written for dimension universe {found}, but the repository has "
            f"{universe}; migrate the older side (`rc2 migrate`) or export again from a "
            "repository of the same universe"
        )
    if _version_key(str(doc["schema_version"]), path) > _version_key(schema, path):
        raise ExportFormatError(
            f"{path} was written by registry schema {doc['schema_version']}, newer than the "
            f"repository's schema {schema}; upgrade the repository with `rc2 migrate` first"
        )


def _version_key(version: str, path: Path) -> tuple[int, ...]:
    """``"1.2"`` -> ``(1, 2)``. Files of an older schema are read as they are: what a file
    holds is fixed by its export format version, which a schema change altering exported
    content must bump."""
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        raise ExportFormatError(
            f"{path}: schema_version {version!r} is not a version like '1.2'"
        ) from None


def from_document(doc: dict[str, Any], universe: UniverseTag) -> Bundle:
    """The bundle a (checked) document describes."""
    bundle = Bundle(universe, doc["schema_version"])
    for element, group in (doc.get("dimension_records") or {}).items():
        columns = group["columns"]
        rows = _parse_rows(group["rows"], f"dimension_records.{element}")
        check_rows(rows, len(columns), f"dimension_records.{element}")
        bundle.records[element] = [
            {c: _decode_value(c, v) for c, v in zip(columns, row, strict=True)} for row in rows
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
        dt = types.get(group.get("dataset_type"))
        run = group.get("run")
        where = f"datasets of {group.get('dataset_type')} in {run}"
        if dt is None or not isinstance(run, str):
            raise ExportFormatError(f"{where}: the dataset type is not among dataset_types")
        columns = group["columns"]
        n_dims = len(columns) - 4
        if tuple(columns[1 : 1 + n_dims]) != dt.dimensions:
            raise ExportFormatError(
                f"{where}: columns {columns[1 : 1 + n_dims]} are not the dimensions "
                f"{list(dt.dimensions)} of {dt.name}"
            )
        rows = _parse_rows(group["rows"], where)
        check_rows(rows, n_dims + 4, where)
        ids = hex_ids([r[0] for r in rows], where)
        path_at = 1 + n_dims
        dims = slice(1, path_at)
        g = DatasetGroup(dt, run, ids, [tuple(r[dims]) for r in rows])
        _check_file_columns(rows, path_at, where)
        paths = [r[path_at] for r in rows]
        if paths.count(None) != len(paths):
            g.paths = paths
            g.formatters = [r[path_at + 1] for r in rows]
            g.file_sizes = [r[path_at + 2] for r in rows]
        bundle.groups.append(g)
    known = {i for g in bundle.groups for i in g.ids}
    for g in doc.get("tagged") or []:
        where = f"tagged.{g['collection']}"
        rows = _parse_rows(g["rows"], where)
        check_rows(rows, 1, where)
        bundle.tagged[g["collection"]] = _members(
            hex_ids([r[0] for r in rows], where), known, where
        )
    for g in doc.get("calibrations") or []:
        where = f"calibrations.{g['collection']}"
        rows = _parse_rows(g["rows"], where)
        check_rows(rows, 3, where)
        ids = _members(hex_ids([r[0] for r in rows], where), known, where)
        for n, r in enumerate(rows, 1):
            if not all(_is_int(v) for v in r[1:]):
                raise ExportFormatError(
                    f"{where}: row {n}: validity range {r[1:]} is not two integers "
                    "(TAI nanoseconds); export it again (nothing was written)"
                )
        bundle.validity[g["collection"]] = [(i, r[1], r[2]) for i, r in zip(ids, rows, strict=True)]
    return bundle


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: The largest value a registry's BIGINT column holds.
_MAX_INT64 = 2**63 - 1


def _check_file_columns(rows: list[Any], path_at: int, where: str) -> None:
    """Paths and formatters are text, file sizes integers 0 .. 2**63-1 (each or None)."""
    for n, r in enumerate(rows, 1):
        path, formatter, size = r[path_at : path_at + 3]
        if not all(v is None or isinstance(v, str) for v in (path, formatter)) or not (
            size is None or (_is_int(size) and 0 <= size <= _MAX_INT64)
        ):
            raise ExportFormatError(
                f"{where}: row {n}: path {path!r}, formatter {formatter!r}, file size {size!r} "
                "must be text, text and an integer from 0 to 2**63-1; export it again "
                "(nothing was written)"
            )
        if formatter is not None and formatter not in FORMATTERS:
            raise ExportFormatError(
                f"{where}: row {n}: unknown formatter {formatter!r} (known: "
                f"{', '.join(sorted(FORMATTERS))}); export it again (nothing was written)"
            )


def _members(ids: list[str], known: set[str], where: str) -> list[str]:
    """``ids``, each of which must be a dataset of the file."""
    for i in ids:
        if i not in known:
            raise ExportFormatError(
                f"{where}: dataset {dashed(i)} is not among the file's datasets; "
                "export it again (nothing was written)"
            )
    return ids
