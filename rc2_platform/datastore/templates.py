"""File path templates: data ID + run + dataset type -> a safe path under the root.

A template is a ``/``-separated string of fields in braces, e.g.
``{run}/{dataset_type}/{band:?}/{dataset_type}_{instrument}_{visit}_{detector}_{run}``.
``{name:?}`` is optional: when the data ID has no ``name`` it is dropped, and the
``_``/``-``/``.`` separators it leaves doubled or dangling are removed, as are empty
directories. Available fields: ``run``, ``dataset_type``, ``storage_class``, ``id``
and every dimension of the data ID.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rc2_platform.errors import ConfigError, DatastoreError, PathTraversalError

_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]")
_SEPARATORS = "_-."
_SPECIAL = ("run", "dataset_type", "storage_class", "id")
_SPECIAL_SET = frozenset(_SPECIAL)


def check_component(value: str, what: str) -> str:
    """Return ``value`` if it is safe as (part of) one path component.

    Raises
    ------
    PathTraversalError
        If the value is empty, ``.``/``..``-like, contains ``..``, a slash, a
        backslash, NUL or another control character, or starts with ``~``.
    """
    if (
        not value
        or value in (".", "..")
        or ".." in value
        or _BAD_CHARS.search(value)
        or value.startswith("~")
    ):
        raise PathTraversalError(
            f"{what} {value!r} cannot be used in a file path: it is empty or contains "
            "'..', '/', '\\', '~' at the start, NUL or a control character; "
            "use a plain name or number"
        )
    return value


def check_run(run: str) -> list[str]:
    """Split a RUN name at ``/`` into safe directory components.

    RUN names may be hierarchical (``HSC/runs/RC2``) but not absolute and no
    component may be empty, ``.`` or ``..``.
    """
    return list(_run_parts(run))


@functools.lru_cache(maxsize=64)
def _run_parts(run: str) -> tuple[str, ...]:
    # Every file path of a job names the same few RUNs: check each once.
    if run.startswith("/"):
        raise PathTraversalError(
            f"run {run!r} is an absolute path; run names must be relative like 'HSC/runs/RC2'"
        )
    return tuple(check_component(part, f"run {run!r} component") for part in run.split("/"))


@dataclass(frozen=True)
class _Field:
    name: str
    optional: bool


class PathTemplate:
    """A parsed path template.

    Parameters
    ----------
    template : str
        The template text (see module docstring).
    name : str
        Where it came from (dataset type name or ``default``), for error messages.
    """

    def __init__(self, template: str, name: str = "default"):
        self.template = template
        self.name = name
        if template.startswith("/") or "\\" in template:
            raise ConfigError(
                f"path template {name!r} = {template!r} must be a relative POSIX path"
            )
        self._segments: list[list[str | _Field]] = [
            self._parse_segment(seg) for seg in template.split("/")
        ]
        if not self._segments[-1]:
            raise ConfigError(f"path template {name!r} = {template!r} has an empty file name")

    def _parse_segment(self, segment: str) -> list[str | _Field]:
        parts: list[str | _Field] = []
        try:
            parsed = list(string.Formatter().parse(segment))
        except ValueError as exc:
            raise ConfigError(f"path template {self.name!r} = {self.template!r}: {exc}") from None
        for text, field_name, spec, _conv in parsed:
            if text:
                if text in (".", "..") or ".." in text:
                    raise ConfigError(f"path template {self.name!r} may not contain '..'")
                parts.append(text)
            if field_name is None:
                continue
            if not _FIELD_NAME.match(field_name) or spec not in ("", "?"):
                raise ConfigError(
                    f"path template {self.name!r} = {self.template!r}: bad field "
                    f"{{{field_name}:{spec}}}; write {{name}} or {{name:?}}"
                )
            parts.append(_Field(field_name, spec == "?"))
        return parts

    @functools.cached_property
    def fields(self) -> frozenset[str]:
        """Names of all fields used."""
        return frozenset(p.name for seg in self._segments for p in seg if isinstance(p, _Field))

    def format(self, values: Mapping[str, Any], run: str) -> str:
        """Return the relative POSIX path (without extension) for ``values``.

        Parameters
        ----------
        values : Mapping[str, Any]
            Data ID values plus ``dataset_type``, ``storage_class``, ``id``.
        run : str
            The RUN collection; in a directory it may expand to several
            directories, in the file name its ``/`` become ``_``.

        Raises
        ------
        PathTraversalError
            A value would make an unsafe path.
        DatastoreError
            A required field has no value, or a data ID dimension is not in the template
            (two datasets could then share a file).
        """
        run_parts = _run_parts(run)
        unused = values.keys() - self.fields - _SPECIAL_SET
        if unused:
            raise DatastoreError(
                f"path template {self.name!r} = {self.template!r} does not use data ID "
                f"dimension(s) {sorted(unused)}; add them so every dataset gets its own file"
            )
        out: list[str] = []
        last = len(self._segments) - 1
        for i, segment in enumerate(self._segments):
            if len(segment) == 1 and segment[0] == _Field("run", False) and i != last:
                out.extend(run_parts)
                continue
            text = self._format_segment(segment, values, run, i == last)
            if text:
                out.append(text)
        return "/".join(out)

    def _format_segment(
        self, segment: list[str | _Field], values: Mapping[str, Any], run: str, is_file: bool
    ) -> str:
        pieces: list[str] = []
        for part in segment:
            if isinstance(part, str):
                pieces.append(part)
                continue
            if part.name == "run":
                pieces.append("_".join(_run_parts(run)))
                continue
            if part.name not in values or values[part.name] is None:
                if part.optional:
                    pieces.append("\x00")  # marker, removed below
                    continue
                raise DatastoreError(
                    f"path template {self.name!r} = {self.template!r} needs {part.name!r} "
                    f"but the data ID {dict(values)} has no such value; make the field "
                    f"optional ({{{part.name}:?}}) or use a template for this dataset type"
                )
            pieces.append(check_component(str(values[part.name]), f"value of {part.name!r}"))
        return _squeeze("".join(pieces))


def _squeeze(text: str) -> str:
    """Remove markers of missing optional fields and the separators they strand."""
    if "\x00" not in text:
        return text
    return re.sub(r"[_\-.]?\x00", "", text).strip(_SEPARATORS)
