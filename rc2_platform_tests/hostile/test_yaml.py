"""Hostile YAML: duplicate keys, alias bombs, recursion, deep nesting, unsafe tags, bad roots.

Every YAML file the platform reads goes through ``rc2_platform.core.yaml_safe``; each case
feeds one hostile document to one kind of configuration (through the CLI where a command
reads it, else through the library) and expects a clean one-line refusal naming the file,
a non-zero exit and nothing written.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from rc2_platform.butler import Butler
from rc2_platform.core import yaml_safe
from rc2_platform.core.yaml_safe import YamlError, load_yaml, read_yaml_text
from rc2_platform.datastore.config import load_datastore_config
from rc2_platform.errors import Rc2Error
from rc2_platform.execution.execution_config import load_execution_config
from rc2_platform.instrument.camera import load_camera
from rc2_platform.registry import DimensionUniverse
from rc2_platform.server.config import load_server_config
from rc2_platform.simulate.presets import load_preset
from rc2_platform.skymap.config import skymap_config_names
from rc2_platform_tests.butler.conftest import snapshot
from rc2_platform_tests.hostile.conftest import expect_cli_refusal, tally


def _billion_laughs(levels: int = 9) -> str:
    text, prev = 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n', "l0"
    for i in range(1, levels + 1):
        text += f"l{i}: &l{i} [{', '.join([f'*{prev}'] * 9)}]\n"
        prev = f"l{i}"
    return text


#: Hostile documents built around a key ``k`` the configuration really uses, and the rule
#: each one breaks (a fragment of the expected message).
def _documents(k: str) -> dict[str, tuple[str | bytes, str]]:
    return {
        "dup-root": (f"{k}: 1\n{k}: 2\n", f"duplicate key {k!r} at line 2"),
        "dup-depth2": (f"{k}:\n  a: 1\n  b: 2\n  a: 3\n", "duplicate key 'a' at line 4"),
        "dup-depth3-in-list": (
            f"{k}:\n  - x:\n      b: 1\n      b: 2\n",
            "duplicate key 'b' at line 4",
        ),
        "dup-flow": (f"{{{k}: 1, other: 2, {k}: 3}}\n", f"duplicate key {k!r}"),
        "alias-bomb": (_billion_laughs() + f"{k}: *l9\n", "alias bombs are refused"),
        "alias-recursive": (f"{k}: &r [1, *r]\n", "recursive YAML structures"),
        "deep-nesting": (f"{k}: " + "[" * 400 + "]" * 400 + "\n", "nesting deeper"),
        "syntax": (f"{k}: [1, 2\nx: }}\n", "not valid YAML at line"),
        "python-tag": (
            f"{k}: !!python/object/apply:os.system ['touch MARKER']\n",
            "not valid YAML",
        ),
        "control-char": (f'{k}: "a\x01b"\n', "characters are not allowed"),
        "not-utf8": (f"{k}: ".encode() + b"\xff\xfe\x80 caf\xe9\n", "not UTF-8 text"),
        "utf16": (f"{k}: text\n".encode("utf-16"), "not UTF-8 text"),
    }


def _write(path: Path, text: str | bytes) -> None:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


def _cases(kinds: list[str]) -> list[Any]:
    return [
        pytest.param(kind, name, id=f"{kind}-{name}") for kind in kinds for name in _documents("k")
    ]


# --- the loader itself -----------------------------------------------------------------


LOADERS = [yaml_safe.StrictSafeLoader, yaml_safe._LOADER]


@pytest.mark.parametrize("loader", LOADERS, ids=["python", "default"])
@pytest.mark.parametrize(
    "name", [n for n, (text, _) in _documents("k").items() if isinstance(text, str)]
)
def test_loader_refuses_each_hostile_document(
    loader: type, name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(yaml_safe, "_LOADER", loader)
    monkeypatch.chdir(tmp_path)
    text, rule = _documents("key")[name]
    assert isinstance(text, str)
    with pytest.raises(YamlError) as info:
        load_yaml(text, "hostile.yaml")
    message = str(info.value)
    ok = "\n" not in message and message.startswith("hostile.yaml: ") and rule in message
    tally("clean" if ok else "traceback")
    assert ok, message
    assert not (tmp_path / "MARKER").exists()


@pytest.mark.parametrize("loader", LOADERS, ids=["python", "default"])
def test_loader_keeps_what_yaml_allows(loader: type, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yaml_safe, "_LOADER", loader)
    text = "base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  x: 3\nl: [*b, *b]\nn: ~\nt: 2020-01-01\n"
    data = load_yaml(text, "ok.yaml")
    assert data["d"] == {"x": 3, "y": 2}
    assert data["l"] == [{"x": 1, "y": 2}] * 2
    assert load_yaml("", "empty.yaml") is None
    assert load_yaml(yaml.safe_dump({"a": list(range(50_000))}), "big.yaml")["a"][-1] == 49_999


def test_alias_bomb_refused_from_the_composed_nodes() -> None:
    # ~10**12 nodes once expanded; refused from the few dozen nodes written (no expansion).
    with pytest.raises(YamlError, match="expand [0-9]+ distinct nodes to [0-9]{13} ") as info:
        load_yaml(_billion_laughs(12), "bomb.yaml")
    tally("clean" if str(info.value).startswith("bomb.yaml: ") else "traceback")


# --- per kind of configuration, through the library ---------------------------------------


def _library_loaders(tmp_path: Path) -> dict[str, tuple[str, Callable[[Path], Any]]]:
    return {
        "execution-config": ("backends", load_execution_config),
        "server-config": ("limits", load_server_config),
        "preset": ("name", load_preset),
        "skymap-config": ("skymaps", skymap_config_names),
        "dimensions": ("version", lambda p: DimensionUniverse.from_yaml(read_yaml_text(p), str(p))),
        "yaml-dataset": ("a", lambda p: _read_dataset(p)),
        "camera": ("detectors", load_camera),
        "datastore-config": ("templates", lambda p: load_datastore_config(templates_file=p)),
    }


def _read_dataset(path: Path) -> Any:
    from rc2_platform.datastore.formatters import YamlFormatter

    return YamlFormatter().read(path)


LIBRARY_KINDS = [
    "execution-config",
    "server-config",
    "preset",
    "skymap-config",
    "dimensions",
    "yaml-dataset",
    "camera",
    "datastore-config",
]


@pytest.mark.parametrize(("kind", "name"), _cases(LIBRARY_KINDS))
def test_library_refuses_hostile_config(
    kind: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    key, load = _library_loaders(tmp_path)[kind]
    text, rule = _documents(key)[name]
    path = tmp_path / f"{kind}.yaml"
    _write(path, text)
    try:
        load(path)
    except Rc2Error as exc:
        ok = "\n" not in str(exc) and str(path) in str(exc) and rule in str(exc)
        outcome = "clean" if ok else "traceback"
    except Exception as exc:  # noqa: BLE001 - an untranslated error is what we count
        outcome = f"traceback: {exc!r}"
    else:
        outcome = "wrong acceptance"
    tally(outcome if outcome in ("clean", "wrong acceptance") else "traceback")
    assert outcome == "clean", outcome
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


# --- per kind of configuration, through the CLI -----------------------------------------


@pytest.mark.parametrize(("kind", "name"), _cases(["pipeline"]))
def test_pipeline_show_refuses_hostile_yaml(kind: str, name: str, tmp_path: Path) -> None:
    text, rule = _documents("tasks")[name]
    path = tmp_path / "pipe.yaml"
    _write(path, text)
    result = expect_cli_refusal(["pipeline", "show", path], match=rule)
    assert str(path) in result.output


@pytest.mark.parametrize(("kind", "name"), _cases(["bootstrap", "preset"]))
def test_writing_commands_refuse_hostile_config_and_write_nothing(
    kind: str, name: str, tmp_path: Path
) -> None:
    text, rule = _documents("skymap" if kind == "bootstrap" else "name")[name]
    path = tmp_path / f"{kind}.yaml"
    _write(path, text)
    out = tmp_path / "out"
    args = ["bootstrap", out, path] if kind == "bootstrap" else ["simulate", path, out]
    result = expect_cli_refusal(args, match=rule)
    assert str(path) in result.output
    assert not out.exists()


@pytest.mark.parametrize(("kind", "name"), _cases(["calib-manifest", "export-file"]))
def test_repository_commands_refuse_hostile_yaml(
    kind: str, name: str, hostile_repo: Path, butler: Butler, tmp_path: Path
) -> None:
    text, rule = _documents("calibrations" if kind == "calib-manifest" else "format")[name]
    path = tmp_path / f"{kind}.yaml"
    _write(path, text)
    before = snapshot(butler)
    command = "ingest-calibs" if kind == "calib-manifest" else "import"
    result = expect_cli_refusal([command, hostile_repo, path], match=rule)
    assert str(path) in result.output
    assert snapshot(butler) == before


@pytest.mark.parametrize(("kind", "name"), _cases(["butler.yaml"]))
def test_hostile_butler_yaml_refused_and_nothing_created(
    kind: str, name: str, tmp_path: Path
) -> None:
    text, rule = _documents("registry")[name]
    root = tmp_path / "repo"
    root.mkdir()
    _write(root / "butler.yaml", text)
    expect_cli_refusal(["dataset-types", root], match=rule)
    assert sorted(p.name for p in root.iterdir()) == ["butler.yaml"]


# --- roots and types that are valid YAML but not the configuration ----------------------

ROOTS = {
    "list-root": "- a\n- b\n",
    "scalar-root": "just some text\n",
    "number-root": "42\n",
}


@pytest.mark.parametrize("root", list(ROOTS))
@pytest.mark.parametrize(
    "kind",
    [
        "execution-config",
        "server-config",
        "preset",
        "skymap-config",
        "dimensions",
        "camera",
        "datastore-config",
    ],
)
def test_library_refuses_non_mapping_roots(kind: str, root: str, tmp_path: Path) -> None:
    _, load = _library_loaders(tmp_path)[kind]
    path = tmp_path / "x.yaml"
    path.write_text(ROOTS[root])
    try:
        load(path)
    except Rc2Error as exc:
        outcome = "clean" if "\n" not in str(exc) else "traceback"
    except Exception:  # noqa: BLE001
        outcome = "traceback"
    else:
        outcome = "wrong acceptance"
    tally(outcome)
    assert outcome == "clean"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("list-root", "- a\n- b\n"),
        ("scalar-root", "hello\n"),
        ("skymap-list", "skymap: [1, 2]\n"),
        ("calibrations-mapping", "skymap: hsc_rings_v1\ncalibrations: {a: 1}\n"),
        ("raws-number", "skymap: hsc_rings_v1\nraws: 7\n"),
    ],
)
def test_bootstrap_refuses_wrong_shapes(name: str, text: str, tmp_path: Path) -> None:
    path = tmp_path / "bootstrap.yaml"
    _write(path, text)
    out = tmp_path / "out"
    result = expect_cli_refusal(["bootstrap", out, path])
    assert str(path) in result.output
    assert not out.exists()


def test_shipped_configs_still_load() -> None:
    """Every YAML file shipped in the package passes the strict loader."""
    import rc2_platform

    root = Path(rc2_platform.__file__).parent
    files = sorted(root.rglob("*.yaml"))
    assert files
    for file in files:
        load_yaml(file.read_text(), str(file))


# --- wrong types at several depths of each shipped configuration ------------------------

SHIPPED = Path(__file__).parents[2] / "rc2_platform" / "config"
SHIPPED_KINDS: dict[str, Callable[[Path], Any]] = {
    "execution.yaml": load_execution_config,
    "datastore.yaml": lambda p: load_datastore_config(templates_file=p),
    "storage_classes.yaml": lambda p: load_datastore_config(storage_classes_file=p),
    "hsc_camera.yaml": load_camera,
    "simulate_tiny.yaml": load_preset,
    "skymaps.yaml": skymap_config_names,
    "dimensions.yaml": lambda p: DimensionUniverse.from_yaml(read_yaml_text(p), str(p)),
}


def _wrong(value: Any) -> Any:
    """A value of another type than ``value`` (mapping -> int, list -> text, ...)."""
    if isinstance(value, dict):
        return 42
    if isinstance(value, list):
        return "text"
    if isinstance(value, bool):
        return [1]
    if isinstance(value, int | float):
        return {"a": 1}
    return [1, 2]


def _key_paths(node: Any, depth: int, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to the keys of ``node`` down to ``depth`` (the first item of each list)."""
    if depth == 0:
        return []
    items: list[tuple[Any, Any]] = []
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list) and node:
        items = [(0, node[0])]
    paths = []
    for key, value in items:
        paths.append((*prefix, key))
        paths.extend(_key_paths(value, depth - 1, (*prefix, key)))
    return paths


@pytest.mark.parametrize("kind", list(SHIPPED_KINDS))
def test_wrong_types_at_several_depths_refused(kind: str, tmp_path: Path) -> None:
    """Each key (depth 1-3) of a shipped config given a value of another type: refused."""
    load = SHIPPED_KINDS[kind]
    base = load_yaml((SHIPPED / kind).read_text(), kind)
    paths = _key_paths(base, 3)[:25]
    assert paths
    path = tmp_path / kind
    bad = []
    for keys in paths:
        doc = copy.deepcopy(base)
        node = doc
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = _wrong(node[keys[-1]])
        path.write_text(yaml.safe_dump(doc))
        try:
            load(path)
        except Rc2Error as exc:
            outcome = "clean" if "\n" not in str(exc) and str(path) in str(exc) else "traceback"
        except Exception:  # noqa: BLE001 - an untranslated error is what we count
            outcome = "traceback"
        else:
            outcome = "wrong acceptance"
        tally(outcome)
        if outcome != "clean":
            bad.append((keys, outcome))
    assert bad == []


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A repository with a three-task stand-in graph (execution tests' helpers)."""
    from rc2_platform_tests.execution.helpers import make_graph, make_repo

    tmp = tmp_path_factory.mktemp("run")
    butler, raws = make_repo(tmp / "repo")
    butler.close()
    make_graph(tmp / "g.qgraph", raws)
    return tmp / "repo", tmp / "g.qgraph"


@pytest.mark.parametrize(("kind", "name"), _cases(["execution-config"]))
def test_rc2_run_refuses_hostile_execution_config(
    kind: str, name: str, small_run: tuple[Path, Path], tmp_path: Path
) -> None:
    repo, graph = small_run
    text, rule = _documents("backends")[name]
    path = tmp_path / "execution.yaml"
    _write(path, text)
    before = sorted(p.relative_to(repo) for p in repo.rglob("*"))
    result = expect_cli_refusal(["run", repo, graph, "--execution-config", path], match=rule)
    assert str(path) in result.output
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == before


@pytest.mark.parametrize("kind", ["pipeline", "bootstrap", "butler.yaml", "preset"])
def test_oversized_yaml_file_refused_unread(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file beyond MAX_FILE_BYTES (lowered to 1 MiB here) is refused after reading the bound."""
    monkeypatch.setattr(yaml_safe, "MAX_FILE_BYTES", 2**20)
    path = tmp_path / ("repo/butler.yaml" if kind == "butler.yaml" else f"{kind}.yaml")
    path.parent.mkdir(exist_ok=True)
    with open(path, "wb") as fh:  # sparse: 64 MiB of nothing on disk
        fh.truncate(64 * 2**20)
    out = tmp_path / "out"
    args = {
        "pipeline": ["pipeline", "show", path],
        "bootstrap": ["bootstrap", out, path],
        "butler.yaml": ["dataset-types", path.parent],
        "preset": ["simulate", path, out],
    }[kind]
    result = expect_cli_refusal(args, match="larger than 1 MiB")
    assert str(path) in result.output
    assert not out.exists()
