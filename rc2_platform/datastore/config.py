"""Datastore configuration: path templates and storage classes, from packaged YAML."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from rc2_platform.core.yaml_safe import load_yaml, read_yaml_text
from rc2_platform.datastore.formatters import FORMATTERS
from rc2_platform.datastore.templates import PathTemplate
from rc2_platform.errors import ConfigError


class StorageClassConfig(BaseModel):
    """One storage class: its formatter name and a description."""

    model_config = ConfigDict(extra="forbid")

    formatter: str
    description: str = ""

    @field_validator("formatter")
    @classmethod
    def _known_formatter(cls, value: str) -> str:
        if value not in FORMATTERS:
            raise ValueError(f"unknown formatter {value!r}; known: {sorted(FORMATTERS)}")
        return value


class DatastoreConfig(BaseModel):
    """Path templates (``default`` plus per dataset type) and storage classes."""

    model_config = ConfigDict(extra="forbid")

    templates: dict[str, str]
    storage_classes: dict[str, StorageClassConfig]

    @field_validator("templates")
    @classmethod
    def _valid_templates(cls, value: dict[str, str]) -> dict[str, str]:
        if "default" not in value:
            raise ValueError("templates must include a 'default' template")
        for name, text in value.items():
            try:
                PathTemplate(text, name)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value


def _read_yaml(path: Path | None, package_file: str) -> dict[str, Any]:
    if path is None:
        text = resources.files("rc2_platform.config").joinpath(package_file).read_text("utf-8")
        where = f"rc2_platform/config/{package_file}"
    else:
        text, where = read_yaml_text(path), str(path)
    data = load_yaml(text, where) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a mapping at the top level")
    return data


def load_datastore_config(
    templates_file: Path | None = None, storage_classes_file: Path | None = None
) -> DatastoreConfig:
    """Load and validate the datastore configuration.

    Parameters
    ----------
    templates_file, storage_classes_file : Path, optional
        YAML files to use instead of the packaged ``datastore.yaml`` and
        ``storage_classes.yaml``.

    Raises
    ------
    ConfigError
        If a file is not valid YAML or fails validation (unknown formatter, bad template).
    """
    if templates_file is None and storage_classes_file is None:
        # The packaged files do not change while the process runs: parse them once (each
        # cluster job opens a datastore; forked jobs inherit the fork server's copy).
        return _packaged_config().model_copy(deep=True)
    return _load(templates_file, storage_classes_file)


@functools.cache
def _packaged_config() -> DatastoreConfig:
    return _load(None, None)


def _load(templates_file: Path | None, storage_classes_file: Path | None) -> DatastoreConfig:
    data = _read_yaml(templates_file, "datastore.yaml")
    data.update(_read_yaml(storage_classes_file, "storage_classes.yaml"))
    try:
        return DatastoreConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        files = [str(f) for f in (templates_file, storage_classes_file) if f is not None]
        where = f" ({' + '.join(files) or 'rc2_platform/config'})"
        raise ConfigError(
            f"invalid datastore configuration{where} at {loc}: {first['msg']}"
        ) from None
