"""A finished job's outputs manifest: its registrations as columns, for ``rc2 aggregate``.

When a job ends normally, its worker writes ``outputs.json`` beside its records file
(``REPO/_runs/<run>/jobs/<cluster>/attempt<N>/``): the outputs of its succeeded quanta
(the latest record of each quantum) grouped per dataset type, as columns::

    {"version": 2, "start": 0, "end": 51234, "quanta": 98,
     "types": {"calexp": {"dimensions": ["instrument", "detector", "visit"],
                          "ids": [...],
                          "data_ids": {"instrument": {"value": "HSC"},
                                       "detector": [...], "visit": [...]},
                          "paths": [...], "formatter": "fits_exposure",
                          "storage_class": "Exposure", "sizes": [...]}, ...}}

It says exactly what the records file's lines from byte ``start`` to ``end`` say about
outputs (``quanta`` quantum lines), so the registration reads one small document per job
instead of parsing every line (with inputs, timing, errors) and regrouping its records:
for tract 9615, 6.7 MB instead of 22 MB and no Python work per dataset. ``formatter`` and
``storage_class`` are one string when the same for every dataset of the type, else one
per dataset; the data-ID values are one list per dimension, or ``{"value": v}`` when the
same for every dataset. The file is written whole (temporary name, then rename); a job killed before
it has none, and its records file is read line by line as before. The records file stays
the source of truth: a manifest that is missing, from another version, or inconsistent
is ignored.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from rc2_platform.execution.executor import QuantumOutcome
from rc2_platform.execution.quantum_state import QuantumState

__all__ = ["MANIFEST_VERSION", "OUTPUTS_FILE", "TypeColumns", "read_manifest", "write_manifest"]

#: Name of the manifest in a job attempt's folder.
OUTPUTS_FILE = "outputs.json"

#: Version of the manifest's layout; readers ignore any other.
MANIFEST_VERSION = 2

#: One dataset type's outputs in a manifest: its dimensions, then ids, data-ID value
#: tuples, paths, formatters, storage classes and sizes (equal-length lists).
TypeColumns = tuple[
    tuple[str, ...], list[str], list[tuple[Any, ...]], list[str], list[str], list[str], list[Any]
]


def write_manifest(
    folder: Path,
    outcomes: Sequence[QuantumOutcome],
    output_dimensions: Mapping[str, Sequence[str]],
    start: int,
    end: int,
) -> bool:
    """Write the manifest of ``outcomes`` (the records written from ``start`` to ``end``).

    ``outcomes`` are every quantum record written in that range, in order; the latest
    of each quantum counts. Returns False, writing nothing, when an output's dataset type
    is not in ``output_dimensions`` or its data ID lacks one of them, or when the file
    cannot be written (a full disk): the records file is then read line by line.
    """
    latest: dict[int, QuantumOutcome] = {}
    for outcome in outcomes:
        latest.pop(outcome.index, None)
        latest[outcome.index] = outcome
    types: dict[str, dict[str, Any]] = {}
    try:
        for outcome in latest.values():
            if outcome.status is not QuantumState.SUCCEEDED or not outcome.records:
                continue
            declared = {str(entry[1]): entry for entry in outcome.outputs}
            for record in outcome.records:
                entry = declared.get(str(record.dataset_id))
                if entry is None:
                    continue  # as the line reader: a file the quantum does not declare
                name = entry[0]
                dims = output_dimensions[name]
                values = entry[2] if len(entry) > 2 else outcome.data_id
                column = types.get(name)
                if column is None:
                    column = types[name] = {
                        "dimensions": list(dims),
                        "ids": [],
                        "data_ids": [],
                        "paths": [],
                        "formatter": [],
                        "storage_class": [],
                        "sizes": [],
                    }
                column["ids"].append(str(record.dataset_id))
                column["data_ids"].append([values[d] for d in dims])
                column["paths"].append(record.path)
                column["formatter"].append(record.formatter)
                column["storage_class"].append(record.storage_class)
                column["sizes"].append(record.file_size)
    except KeyError:
        return False
    for column in types.values():
        # Sorted by id: the registration merges the jobs' sorted runs (cheap for Python's
        # sort) before its inserts in id order.
        order = sorted(range(len(column["ids"])), key=column["ids"].__getitem__)
        for name in ("ids", "data_ids", "paths", "formatter", "storage_class", "sizes"):
            column[name] = [column[name][k] for k in order]
        # Data-ID values: one list per dimension (the reader zips them in C), or one value.
        keys = column["data_ids"]
        column["data_ids"] = {
            dim: _one_or_all([key[i] for key in keys]) for i, dim in enumerate(column["dimensions"])
        }
        for name in ("formatter", "storage_class"):
            values = column[name]
            if values.count(values[0]) == len(values):
                column[name] = values[0]
    doc = {
        "version": MANIFEST_VERSION,
        "start": start,
        "end": end,
        "quanta": len(outcomes),
        "types": types,
    }
    path = folder / OUTPUTS_FILE
    tmp = folder / f".{OUTPUTS_FILE}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.write_bytes(orjson.dumps(doc))
        os.replace(tmp, path)
    except OSError:  # only a shortcut for the registration: never the job's failure
        tmp.unlink(missing_ok=True)
        return False
    return True


def _one_or_all(values: list[Any]) -> Any:
    """``{"value": v}`` when every value is ``v``, else the values."""
    return {"value": values[0]} if values.count(values[0]) == len(values) else values


def read_manifest(
    records: Path, start: int, dimensions: Callable[[str], Sequence[str]]
) -> tuple[int, int, dict[str, TypeColumns]] | None:
    """The manifest beside the records file ``records`` if it covers it from byte ``start``.

    Returns its end offset, its number of quantum lines and its columns per dataset type,
    or None when there is no usable manifest: none, another version, not starting at
    ``start``, a dataset type whose registered dimensions (``dimensions(name)``) differ,
    or columns of unequal lengths (the records file is then read line by line).
    """
    try:
        doc = orjson.loads((records.parent / OUTPUTS_FILE).read_bytes())
        size = records.stat().st_size
    except (OSError, orjson.JSONDecodeError):
        return None
    try:
        if doc["version"] != MANIFEST_VERSION or doc["start"] != start:
            return None
        end, quanta = int(doc["end"]), int(doc["quanta"])
        out: dict[str, TypeColumns] = {}
        for name, column in doc["types"].items():
            dims = tuple(column["dimensions"])
            if tuple(dimensions(name)) != dims:
                return None
            ids, paths, sizes = column["ids"], column["paths"], column["sizes"]
            n = len(ids)
            formatters, classes = (
                [value] * n if isinstance(value, str) else value
                for value in (column["formatter"], column["storage_class"])
            )
            by_dimension = column["data_ids"]
            if not isinstance(by_dimension, dict) or tuple(by_dimension) != dims:
                return None
            lists = [v for v in by_dimension.values() if not isinstance(v, dict)]
            columns = (*lists, ids, paths, sizes, formatters, classes)
            if not all(isinstance(c, list) and len(c) == n for c in columns):
                return None
            values = [
                itertools.repeat(v["value"], n) if isinstance(v, dict) else v
                for v in by_dimension.values()
            ]
            data_ids = list(zip(*values, strict=True)) if dims else [()] * n
            out[name] = (dims, ids, data_ids, paths, formatters, classes, sizes)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if end <= start or size < end:
        return None
    return end, quanta, out
