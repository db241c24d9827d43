"""The name grammar: what a collection name, a dataset type name and a dimension value may be.

One rule per kind of name, checked where names enter (registry, ingest, command line,
graph build) so that a name accepted once is never refused later (by the datastore when
it becomes a path, by the command line when it is split at commas). The rules are
documented in ``docs/registry.md`` ("Names").

=====================  ====================================================================
kind                   rule
=====================  ====================================================================
collection             1-255 characters; segments separated by ``/`` (``HSC/runs/RC2``);
(RUN, TAGGED,          no empty segment (so no leading, trailing or doubled ``/``); no
CHAINED, CALIBRATION)  ``..`` anywhere, no segment ``.``, no segment starting with ``~``;
                       no control or invisible formatting character, no ``\\`` or ``,``;
                       no whitespace other than a plain space, none at the start or end
                       of a segment
dataset type           1-128 characters; a letter or ``_`` first, then letters, digits and
                       ``_``; ``.`` separates components (``calexp.wcs``)
dimension value        a string of 1 to the dimension's length (32 or 64); the rules of
(string)               one collection segment (so no ``/``)
dimension value (int)  a whole number between -2**63 and 2**63-1 (64-bit)
=====================  ====================================================================
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from rc2_platform.errors import InvalidNameError

#: Longest collection name (the registry's column).
COLLECTION_MAX = 255
#: Longest dataset type name (the registry's column).
DATASET_TYPE_MAX = 128
#: Range of integer data ID values (64-bit signed columns on every backend).
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_DATASET_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_FORBIDDEN = {"\\": "a backslash", ",": "a comma"}
_DOC = "see docs/registry.md#names"


def show(value: Any, limit: int = 80) -> str:
    """``value`` quoted with control and invisible characters escaped, cut to ``limit``."""
    text = repr(value)  # repr escapes every non-printable character (C*, Zl, Zp)
    if len(text) > limit:
        size = f"{len(value)} characters" if isinstance(value, str) else f"{len(text)} digits"
        text = f"{text[: limit - 1]}… ({size})"
    return text


def _bad_char(c: str) -> bool:
    """Control, formatting (bidi overrides, zero-width), surrogate, private or line separators."""
    if c == " ":
        return False
    category = unicodedata.category(c)
    return category[0] == "C" or category in ("Zl", "Zp") or c.isspace()


def _segment_problem(segment: str) -> str | None:
    """Why ``segment`` is not a valid path-safe segment, or None."""
    if not segment:
        return "it has an empty segment (a leading, trailing or doubled '/')"
    if ".." in segment:
        return "it contains '..'"
    if segment == ".":
        return "it has a segment '.'"
    if segment.startswith("~"):
        return "a segment starts with '~'"
    for c in segment:
        if _bad_char(c):
            return f"it contains the control or invisible character {ascii(c)}"
        if c in _FORBIDDEN:
            return f"it contains {_FORBIDDEN[c]}"
    if not segment.strip():
        return "a segment is only spaces"
    if segment != segment.strip():
        return "a segment starts or ends with a space"
    return None


def collection_name_problem(name: Any) -> str | None:
    """Why ``name`` breaks the collection name rule, or None if it is valid."""
    if not isinstance(name, str):
        return f"it is a {type(name).__name__}, not a string"
    if not name:
        return "it is empty"
    if len(name) > COLLECTION_MAX:
        return f"it has {len(name)} characters, more than {COLLECTION_MAX}"
    if name.startswith("/"):
        return "it starts with '/' (collection names are relative, like 'HSC/runs/RC2')"
    for segment in name.split("/"):
        problem = _segment_problem(segment)
        if problem is not None:
            return problem
    return None


def dataset_type_name_problem(name: Any) -> str | None:
    """Why ``name`` breaks the dataset type name rule, or None if it is valid."""
    if not isinstance(name, str):
        return f"it is a {type(name).__name__}, not a string"
    if not name:
        return "it is empty"
    if len(name) > DATASET_TYPE_MAX:
        return f"it has {len(name)} characters, more than {DATASET_TYPE_MAX}"
    if _DATASET_TYPE.fullmatch(name) is None:
        return (
            "it is not letters, digits and '_' starting with a letter or '_' "
            "(with '.' between components)"
        )
    return None


def string_value_problem(value: Any, length: int) -> str | None:
    """Why ``value`` breaks the rule of a string dimension value of at most ``length``."""
    if not isinstance(value, str):
        return f"it is a {type(value).__name__}, not a string"
    if not value:
        return "it is empty"
    if len(value) > length:
        return f"it has {len(value)} characters, more than {length}"
    if "/" in value:
        return "it contains '/'"
    return _segment_problem(value)


def int_value_problem(value: int) -> str | None:
    """Why integer ``value`` cannot be a data ID value (beyond 64 bits), or None."""
    if INT64_MIN <= value <= INT64_MAX:
        return None
    return "it does not fit in 64 bits (-2**63 to 2**63-1)"


def check_collection_name(name: Any, kind: str = "collection", where: str = "") -> str:
    """Return ``name`` if it is a valid collection name, else raise InvalidNameError.

    Parameters
    ----------
    name
        The candidate name.
    kind : str
        What it names, for the message (``RUN``, ``CHAINED collection``, ``--output``).
    where : str
        Where it came from (file, option), for the message.
    """
    problem = collection_name_problem(name)
    if problem is not None:
        raise InvalidNameError(refusal(kind + " name", name, problem, where))
    return str(name)


def check_dataset_type_name(name: Any, where: str = "") -> str:
    """Return ``name`` if it is a valid dataset type name, else raise InvalidNameError."""
    problem = dataset_type_name_problem(name)
    if problem is not None:
        raise InvalidNameError(refusal("dataset type name", name, problem, where))
    return str(name)


def refusal(what: str, value: Any, problem: str, where: str = "") -> str:
    """The one-line refusal: value, what it is, the rule broken, where it came from."""
    place = f" (in {where})" if where else ""
    return f"{what} {show(value)}{place} is not allowed: {problem}; {_DOC}"
