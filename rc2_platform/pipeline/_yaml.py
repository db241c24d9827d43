"""Reading pipeline YAML documents (with imports) into validated pydantic models."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rc2_platform.core.yaml_safe import YamlError, load_yaml, read_yaml_text
from rc2_platform.errors import PipelineError
from rc2_platform.pipeline.task_modules import allowed_task_modules, is_allowed_module

#: Package holding the pipelines shipped with rc2_platform (e.g. ``DRP-RC2.yaml``).
PACKAGE_PIPELINES = "rc2_platform.pipelines"
RESOURCE_SCHEME = "resource://"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TaskEntry(_Model):
    """``tasks: {label: {class: ..., config: {...}, connections: {...}}}``."""

    class_: str | None = Field(default=None, alias="class")
    config: dict[str, Any] = Field(default_factory=dict)
    connections: dict[str, str] = Field(default_factory=dict)


class SubsetEntry(_Model):
    """``subsets: {name: {subset: [labels], description: ...}}``."""

    subset: list[str]
    description: str = ""


class StepEntry(_Model):
    """``steps: [{label: step1, dimensions: [...]}]``."""

    label: str
    dimensions: list[str] = Field(default_factory=list)


class ContractEntry(_Model):
    """``contracts: [{contract: "a.x == b.y", msg: ...}]``."""

    contract: str
    msg: str = ""


class ImportEntry(_Model):
    """``imports: [{location: other.yaml, include: [...], exclude: [...]}]``."""

    location: str
    include: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)


class PipelineDocument(_Model):
    """The validated content of one pipeline YAML file."""

    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    imports: list[ImportEntry] = Field(default_factory=list)
    tasks: dict[str, TaskEntry] = Field(default_factory=dict)
    subsets: dict[str, SubsetEntry] = Field(default_factory=dict)
    steps: list[StepEntry] = Field(default_factory=list)
    contracts: list[ContractEntry] = Field(default_factory=list)

    @field_validator("tasks", mode="before")
    @classmethod
    def _short_tasks(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"class": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("subsets", mode="before")
    @classmethod
    def _short_subsets(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"subset": v} if isinstance(v, list) else v for k, v in value.items()}
        return value

    @field_validator("steps", "contracts", "imports", mode="before")
    @classmethod
    def _short_items(cls, value: Any, info: pydantic.ValidationInfo) -> Any:
        key = {"steps": "label", "contracts": "contract", "imports": "location"}[
            info.field_name or ""
        ]
        if isinstance(value, list):
            return [{key: v} if isinstance(v, str) else v for v in value]
        return value


def split_uri(uri: str | Path) -> tuple[str, list[str]]:
    """Split ``FILE#a,b`` into ``("FILE", ["a", "b"])``."""
    text = str(uri)
    location, _, fragment = text.partition("#")
    names = [n.strip() for n in fragment.split(",") if n.strip()]
    return location, names


def resolve_location(location: str, base_dir: Path | None = None) -> tuple[str, Path | None]:
    """Read a pipeline file; return its text and its directory (for relative imports).

    ``location`` is a path (relative to ``base_dir`` if given), a ``file://`` URI, a
    ``resource://package/path.yaml`` URI, or the bare name of a pipeline shipped in
    :data:`PACKAGE_PIPELINES` (``DRP-RC2`` or ``DRP-RC2.yaml``).
    """
    if location.startswith(RESOURCE_SCHEME):
        package, _, inner = location[len(RESOURCE_SCHEME) :].partition("/")
        # Finding a package's resources imports it: check it first, like a task class.
        if not is_allowed_module(package, ("rc2_platform",)):
            raise PipelineError(
                f"pipeline {location!r}: package {package!r} is not rc2_platform or an allowed "
                f"task module ({', '.join(allowed_task_modules())}); nothing was imported"
            )
        if ".." in inner.replace("\\", "/").split("/") or inner.startswith("/"):
            raise PipelineError(f"pipeline {location!r}: the path may not leave the package")
        try:
            return importlib.resources.files(package).joinpath(inner).read_text("utf-8"), None
        except (ImportError, OSError, ValueError) as exc:
            raise PipelineError(f"pipeline {location!r} not found: {exc}") from None
    if location.startswith("file://"):
        location = location[len("file://") :]
    path = Path(location).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if path.is_file():
        return read_yaml_text(path), path.resolve().parent
    packaged = _packaged(location)
    if packaged is not None:
        return packaged, None
    raise PipelineError(
        f"pipeline file {str(path)!r} does not exist; give a path to a pipeline YAML file "
        f"or the name of a shipped pipeline ({', '.join(shipped_pipelines())})"
    )


def _packaged(name: str) -> str | None:
    if "/" in name or "\\" in name:
        return None
    root = importlib.resources.files(PACKAGE_PIPELINES)
    for candidate in (name, f"{name}.yaml"):
        entry = root.joinpath(candidate)
        if entry.is_file():
            return entry.read_text()
    return None


def shipped_pipelines() -> list[str]:
    """Names of the pipelines shipped with the package (without ``.yaml``)."""
    root = importlib.resources.files(PACKAGE_PIPELINES)
    return sorted(e.name[: -len(".yaml")] for e in root.iterdir() if e.name.endswith(".yaml"))


def parse_document(text: str, source: str) -> PipelineDocument:
    """Parse YAML text into a :class:`PipelineDocument`; PipelineError names ``source``."""
    try:
        raw = load_yaml(text, f"pipeline {source}")
    except YamlError as exc:
        raise PipelineError(str(exc)) from None
    return validate_document(raw, source)


def validate_document(raw: Any, source: str) -> PipelineDocument:
    """Validate an already-parsed mapping; PipelineError names ``source``."""
    if not isinstance(raw, dict):
        raise PipelineError(f"pipeline {source}: expected a mapping at the top level")
    try:
        return PipelineDocument.model_validate(raw)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise PipelineError(f"pipeline {source}: {problems}") from None
