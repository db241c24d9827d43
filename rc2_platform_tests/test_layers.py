"""The layer rules of docs/architecture.md, checked on the source."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import rc2_platform
from rc2_platform.registry import DimensionUniverse

PACKAGE = Path(rc2_platform.__file__).parent

#: The butler facade and the modules of its base classes and crash repair: one layer.
_BUTLER = {"butler", "butler_queries", "butler_removal", "butler_repair"}

#: Layers and the rc2_platform subpackages each may not import.
_ALL = _BUTLER | {
    "geometry",
    "registry",
    "datastore",
    "butler_transfer",
    "instrument",
    "skymap",
    "simulate",
    "ingest",
    "pipeline",
    "graph",
    "execution",
    "tasks",
    "validate",
    "monitor",
    "defs",
    "cli",
    "admin",
}

FORBIDDEN = {
    # The shared value types sit at the bottom: they import no other rc2_platform package.
    "core": _ALL - {"core"},
    "geometry": _BUTLER
    | {
        "registry",
        "datastore",
        "ingest",
        "graph",
        "execution",
        "defs",
        "tasks",
    },
    "registry": _BUTLER
    | {
        "datastore",
        "butler_transfer",
        "instrument",
        "skymap",
        "ingest",
        "pipeline",
        "graph",
        "execution",
        "tasks",
        "defs",
    },
    "datastore": _BUTLER | {"registry", "butler_transfer", "ingest", "graph", "execution", "defs"},
    # Export/import/transfer sit on the butler; nothing below them uses them.
    "butler_transfer": {
        "ingest",
        "simulate",
        "pipeline",
        "graph",
        "execution",
        "tasks",
        "defs",
        "cli",
        "server",
        "remote",
    },
    "instrument": _BUTLER | {"registry", "datastore", "ingest", "graph", "execution", "defs"},
    "pipeline": {"graph", "execution", "defs", "ingest"},
    "graph": {"execution", "defs", "ingest"},
    # Workers start through execution/worker.py, never through the CLI.
    "execution": {"registry", "defs", "cli"},
    # The mask file format is in core/: ingest and the tasks read it without the simulator.
    "ingest": {"simulate", "graph", "execution", "tasks", "defs"},
    "tasks": {"defs", "execution", "graph", "simulate"},
    # Monitoring reads RUNs and validates them; Dagster and the CLI call it.
    "monitor": {"defs", "cli"},
    # Data management works on an open Butler; the CLI and Dagster call it, not the reverse.
    "admin": {"defs", "cli", "execution", "graph", "ingest", "pipeline", "tasks", "simulate"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_nothing_below_defs_imports_dagster() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "defs" in path.relative_to(PACKAGE).parts:
            continue
        for name in _imports(path):
            root = name.split(".")[0]
            # dagster_pipes is the dependency-free protocol package workers speak.
            if root in ("dagster", "dagster_k8s", "dagster_postgres", "dagster_webserver"):
                offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert offenders == []


def test_layers_point_down_only() -> None:
    offenders = []
    for layer, forbidden in FORBIDDEN.items():
        for path in (PACKAGE / layer).rglob("*.py"):
            for name in _imports(path):
                parts = name.split(".")
                if parts[0] == "rc2_platform" and len(parts) > 1 and parts[1] in forbidden:
                    offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert offenders == []


#: What each top-level module of the package may not import (rc2_platform subpackages and
#: modules): the butler facade's modules sit on the registry and the datastore only; the
#: demo and the provenance query are applications over the execution layer.
TOP_LEVEL_FORBIDDEN = {
    **{name: _ALL - _BUTLER - {"registry", "datastore"} for name in _BUTLER},
    "errors": _ALL | {"core"},
    "demo": {"defs", "cli"},
    "provenance_query": {"defs", "cli"},
}

#: No module grows past this many lines (the guideline is "mostly < 500": split by purpose).
MAX_MODULE_LINES = 700


def test_top_level_modules_point_down_only() -> None:
    """The layer rules for ``rc2_platform/*.py``; a new top-level module needs a rule here."""
    offenders = []
    for path in sorted(PACKAGE.glob("*.py")):
        name = path.stem
        if name == "__init__":
            continue
        if name not in TOP_LEVEL_FORBIDDEN:
            offenders.append(f"{name}.py has no rule in TOP_LEVEL_FORBIDDEN")
            continue
        for imported in _imports(path):
            parts = imported.split(".")
            top = parts[0] == "rc2_platform" and len(parts) > 1
            if top and parts[1] in TOP_LEVEL_FORBIDDEN[name]:
                offenders.append(f"{name}.py imports {imported}")
    assert offenders == []


def test_no_module_is_longer_than_the_cap() -> None:
    long = []
    for path in PACKAGE.rglob("*.py"):
        n = len(path.read_text().splitlines())
        if n > MAX_MODULE_LINES:
            long.append(f"{path.relative_to(PACKAGE)}: {n} lines")
    assert long == []


def _layer_files(*skip: str) -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in skip]


def test_only_the_cli_uses_the_butler_server_and_its_client() -> None:
    offenders = []
    for path in _layer_files("server", "remote", "cli"):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "rc2_platform" and len(parts) > 1 and parts[1] in ("server", "remote"):
                offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert offenders == []


def test_the_client_imports_no_web_framework_and_the_server_no_dagster() -> None:
    offenders = []
    for path in (PACKAGE / "remote").rglob("*.py"):
        for name in _imports(path):
            root = name.split(".")[0]
            if root in ("fastapi", "starlette", "uvicorn", "argon2", "dagster") or name.startswith(
                "rc2_platform.server"
            ):
                offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
    for path in (PACKAGE / "server").rglob("*.py"):
        for name in _imports(path):
            if name.split(".")[0].startswith("dagster") or (
                name.startswith("rc2_platform.remote")
                and not name.startswith("rc2_platform.remote.wire")
            ):
                offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert offenders == []


def _outside_registry() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] != "registry"]


def test_only_the_registry_writes_sql() -> None:
    """SQLAlchemy is imported only inside registry/; nothing else reaches its private parts."""
    offenders = []
    for path in _outside_registry():
        rel = path.relative_to(PACKAGE)
        for name in _imports(path):
            if name.split(".")[0] == "sqlalchemy":
                offenders.append(f"{rel} imports {name}")
            parts = name.split(".")
            if parts[:2] == ["rc2_platform", "registry"] and parts[2:3] and parts[2][0] == "_":
                offenders.append(f"{rel} imports the private module {name}")
        text = path.read_text()
        for match in re.finditer(r"\b(?:registry|reg)\.(schema|engine)\b", text):
            offenders.append(f"{rel} uses the registry's {match.group(1)} directly")
    assert offenders == []


#: The registry's backend modules: ``_dialect`` and the classes it picks from.
BACKEND_MODULES = re.compile(r"registry/_(?:dialect|backend_\w+)\.py")


def test_backend_differences_live_in_the_backend_modules() -> None:
    """Only registry/_dialect.py and its _backend_*.py ask which database backend it is."""
    pattern = re.compile(
        r"dialect\.name|get_backend_name\(|[\"'](?:postgresql|mysql|mariadb)[\"']\s*[,)=]"
    )
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if BACKEND_MODULES.fullmatch(rel.as_posix()):
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            if pattern.search(line) and not line.lstrip().startswith("#"):
                offenders.append(f"{rel}:{lineno}: {line.strip()}")
    assert offenders == []


def test_query_planner_names_no_dimension() -> None:
    """The planner reads dimension semantics from config/dimensions.yaml, names none itself."""
    names = {el.name for el in DimensionUniverse.default().elements}
    tree = ast.parse((PACKAGE / "registry" / "_queries.py").read_text())
    found = sorted(
        {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in names
        }
    )
    assert found == []


def test_spherical_geometry_lives_in_geometry() -> None:
    """Overlap computations (numpy, k-d trees) are geometry/'s; the registry only stores them."""
    offenders = []
    for path in (PACKAGE / "registry").rglob("*.py"):
        for name in _imports(path):
            if name.split(".")[0] == "scipy":
                offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert offenders == []


def test_every_yaml_load_goes_through_the_safe_loader() -> None:
    """Only core/yaml_safe.py parses YAML (duplicate keys refused, aliases bounded)."""
    loaders = {"safe_load", "load", "load_all", "safe_load_all", "full_load", "unsafe_load"}
    loaders |= {"compose", "compose_all", "SafeLoader", "CSafeLoader", "FullLoader", "Loader"}
    loaders |= {"UnsafeLoader", "CLoader", "CFullLoader", "CUnsafeLoader", "BaseLoader"}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.as_posix() == "core/yaml_safe.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "yaml"
                and node.attr in loaders
            ):
                offenders.append(f"{rel}:{node.lineno}: yaml.{node.attr}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("yaml"):
                names = [a.name for a in node.names if a.name in loaders]
                offenders += [f"{rel}:{node.lineno}: from {node.module} import {n}" for n in names]
    assert offenders == []


def test_backend_classes_are_reached_through_dialect() -> None:
    """Only registry/_dialect.py (and the backend modules themselves) import _backend_*."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if BACKEND_MODULES.fullmatch(rel):
            continue
        if re.search(r"registry(?:\.|\s+import\s+)_backend_", path.read_text()):
            offenders.append(rel)
    assert offenders == []


def _private_methods_by_module() -> dict[str, set[str]]:
    """Per module of the package: the ``_private`` methods its classes define."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        names = found.setdefault(path.relative_to(PACKAGE).as_posix(), set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                names.update(
                    item.name
                    for item in node.body
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                    and item.name.startswith("_")
                    and not item.name.startswith("__")
                )
    return found


def test_no_module_calls_another_modules_private_methods() -> None:
    """``obj._method(...)`` only for a method of a class of the calling module itself.

    Calls on ``self``, ``cls`` and ``super()`` are the class's own business; a private
    method defined only in another module of the package must not be driven from here
    (make it public, with a docstring, if another module needs it). Library names such as
    ``os._exit`` or a named tuple's ``_replace`` are not the package's and pass.
    """
    defined = _private_methods_by_module()
    elsewhere: dict[str, set[str]] = {}
    for module, names in defined.items():
        for name in names:
            elsewhere.setdefault(name, set()).add(module)
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name, owner = node.func.attr, node.func.value
            if name not in elsewhere or name in defined[rel]:
                continue
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and ast.unparse(owner.func) == "super":
                continue
            offenders.append(f"{rel}:{node.lineno}: {ast.unparse(node.func)} ({name} is private)")
    assert offenders == []
