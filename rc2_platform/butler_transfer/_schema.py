"""The shape of an export file, checked before any of it is used.

A hand-edited, truncated or foreign file must be refused with one line naming the file,
the place in it and the rule (``rc2 import`` exit 1), never fail later on a missing key
as an internal error. :func:`check_document` validates the YAML skeleton with pydantic
(the rows stay JSON-lines text, parsed later by ``_format``); :func:`check_rows` the
width of each parsed row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from rc2_platform.errors import ExportFormatError

__all__ = ["check_document", "check_rows"]

_STRICT = ConfigDict(extra="forbid", strict=True)


class _Universe(BaseModel):
    model_config = _STRICT
    namespace: str
    version: int
    digest: str


class _Rows(BaseModel):
    model_config = _STRICT
    columns: list[str]
    rows: str | list[list[Any]]


class _DatasetType(BaseModel):
    model_config = _STRICT
    name: str
    dimensions: list[str]
    storage_class: str
    is_calibration: bool


class _Collection(BaseModel):
    model_config = _STRICT
    name: str
    type: Literal["RUN", "TAGGED", "CHAINED", "CALIBRATION"]
    children: list[str] = []


class _Datasets(_Rows):
    dataset_type: str
    run: str


class _Members(_Rows):
    collection: str


class _Document(BaseModel):
    model_config = _STRICT
    rc2_export: int
    schema_version: str
    universe: _Universe
    files_root: str | None = None
    dimension_records: dict[str, _Rows] | None = None
    dataset_types: list[_DatasetType] | None = None
    collections: list[_Collection] | None = None
    datasets: list[_Datasets] | None = None
    tagged: list[_Members] | None = None
    calibrations: list[_Members] | None = None


def check_document(doc: dict[str, Any], path: Path) -> None:
    """Refuse a document whose keys or value types are not those of the format.

    Raises
    ------
    ExportFormatError
        One line: the file, where in it (``datasets[0].run``) and what is wrong.
    """
    try:
        _Document.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
        got = "" if first["type"] == "missing" else f" (got {_short(first.get('input'))})"
        raise ExportFormatError(
            f"{path}: {where.lstrip('.') or 'the document'}: {_lower_first(first['msg'])}{got}; "
            "it is not a valid rc2 export file (export it again with `rc2 export`; "
            "nothing was written)"
        ) from None


def check_rows(rows: list[Any], width: int, where: str) -> None:
    """Refuse a row that is not a list of ``width`` values (its number is 1-based)."""
    for n, row in enumerate(rows, 1):
        if not isinstance(row, list) or len(row) != width:
            got = f"{len(row)} values" if isinstance(row, list) else _short(row)
            raise ExportFormatError(
                f"{where}: row {n} has {got}, not the {width} of its columns; "
                "export it again (nothing was written)"
            )


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
