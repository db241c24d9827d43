"""The one YAML loader of rc2_platform: safe tags only, duplicate keys refused, aliases bounded.

Every YAML file the platform reads (pipelines, ``butler.yaml``, bootstrap and calibration
manifests, execution/server/datastore configs, presets, the dimension universe, export
files, YAML datasets) goes through :func:`load_yaml` (``test_layers.py`` checks that no other
module calls ``yaml.safe_load`` / ``yaml.load``). Compared with ``yaml.safe_load``:

- a mapping that repeats a key is refused (PyYAML silently keeps the last value);
  keys brought in by a merge key (``<<: *base``) may still be overridden;
- anchors and aliases may expand the document by at most :data:`MAX_ALIAS_EXPANSION`
  nodes beyond the nodes actually written, and may not refer to themselves, so a
  "billion laughs" document is refused after composing its few hundred nodes;
- nesting deeper than :data:`MAX_DEPTH` is refused, and files larger than
  :data:`MAX_FILE_BYTES`;
- every failure is a :class:`YamlError` (a ``ConfigError``) on one line naming the file,
  the line and the rule, never a multi-line PyYAML message or a RecursionError.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import IO, Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from rc2_platform.errors import ConfigError

#: Nodes that aliases may add to a document beyond the nodes written in it.
MAX_ALIAS_EXPANSION = 10_000
#: Deepest nesting of sequences and mappings accepted.
MAX_DEPTH = 200
#: Largest YAML file :func:`read_yaml_text` reads (configuration files are far smaller).
MAX_FILE_BYTES = 256 * 1024 * 1024

_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlError(ConfigError):
    """A YAML file that is not valid YAML or breaks a rule of :mod:`rc2_platform.core.yaml_safe`."""


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


class _Checks:
    """Duplicate-key and alias-expansion checks shared by the Python and C loaders."""

    source: str = "<yaml>"

    def construct_document(self, node: Node) -> Any:
        _check_expansion(node, self.source)
        return super().construct_document(node)  # type: ignore[misc]

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> Any:
        seen: dict[Hashable, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)  # type: ignore[attr-defined]
            if not isinstance(key, Hashable):
                continue  # the base constructor reports unhashable keys
            line = _line(key_node)
            if key in seen:
                raise YamlError(
                    f"{self.source}: duplicate key {key!r} at line {line} (first at line "
                    f"{seen[key]}); keys of a YAML mapping must be unique"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc]


class StrictSafeLoader(_Checks, yaml.SafeLoader):
    """``yaml.SafeLoader`` refusing duplicate keys and alias bombs (pure Python)."""


_CBase: Any = getattr(yaml, "CSafeLoader", None)
if _CBase is not None:

    class StrictCSafeLoader(_Checks, _CBase):  # type: ignore[misc, valid-type]
        """The same checks over libyaml's parser (used when PyYAML was built with it)."""

    _LOADER: type = StrictCSafeLoader
else:  # pragma: no cover - PyYAML without libyaml
    _LOADER = StrictSafeLoader


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_expansion(root: Node, source: str) -> None:
    """Refuse self-referring aliases, deep nesting and alias expansion beyond the bound.

    One iterative walk over the composed node graph (each distinct node visited once),
    computing the size of every node as if aliases were copied out.
    """
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
            continue
        if key in size:
            continue
        if key in on_path:
            raise YamlError(
                f"{source}: an alias at line {_line(node)} refers to the node that contains it; "
                f"recursive YAML structures are refused"
            )
        on_path.add(key)
        if len(on_path) > MAX_DEPTH:
            raise YamlError(
                f"{source}: nesting deeper than {MAX_DEPTH} levels at line {_line(node)}; refused"
            )
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in size)
    expanded, written = size[id(root)], len(size)
    if expanded - written > MAX_ALIAS_EXPANSION:
        raise YamlError(
            f"{source}: anchors and aliases would expand {written} distinct nodes to {expanded} "
            f"(more than {MAX_ALIAS_EXPANSION} extra); alias bombs are refused"
        )


def load_yaml(text: str | bytes | IO[str] | IO[bytes], source: str) -> Any:
    """Parse one YAML document safely.

    Parameters
    ----------
    text : `str`, `bytes` or a readable stream
        The YAML document.
    source : `str`
        The file (or other origin) named in error messages.

    Returns
    -------
    data : `Any`
        Plain Python data (dicts, lists, strings, numbers, booleans, None, dates).

    Raises
    ------
    YamlError
        The text is not valid YAML, repeats a key in a mapping, or its aliases expand
        too far; the one-line message names ``source``, the line and the rule.
    """
    loader = None
    try:
        loader = _LOADER(text)  # the pure-Python reader checks a str here
        loader.source = source
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        raise YamlError(f"{source}: not valid YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise YamlError(f"{source}: not valid YAML: {first}") from None
    except RecursionError:
        raise YamlError(f"{source}: YAML nested too deeply; refused") from None
    except UnicodeDecodeError as exc:
        raise YamlError(_not_utf8(source, exc)) from None
    finally:
        if loader is not None:
            loader.dispose()


def _not_utf8(source: str, exc: UnicodeDecodeError) -> str:
    return (
        f"{source}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
        f"YAML files must be UTF-8"
    )


def read_yaml_text(path: str | Path) -> str:
    """The text of the YAML file ``path``; YamlError if it is too big or not UTF-8.

    OSError (missing, unreadable) passes through for the caller to word.
    """
    path = Path(path)
    with open(path, "rb") as stream:
        data = stream.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise YamlError(
            f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB; refused as a YAML file"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlError(_not_utf8(str(path), exc)) from None


def read_yaml(path: str | Path) -> Any:
    """Read and parse the YAML file ``path`` with :func:`load_yaml` (OSError passes through)."""
    return load_yaml(read_yaml_text(path), str(path))
