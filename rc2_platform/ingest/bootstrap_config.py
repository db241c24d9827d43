"""The pydantic model of ``bootstrap.yaml``: everything needed to set up a repository.

A ``bootstrap.yaml`` is written by ``rc2 simulate`` (or by hand for real data) and read
by ``rc2 bootstrap``.  Relative paths inside the file are relative to the directory that
holds the file; :func:`load_bootstrap_config` resolves them to absolute paths.

Example::

    version: 1
    instrument: HSC
    skymap: {name: hsc_rings_v1_tiny, config: hsc_rings_v1_tiny}
    tracts: [9813]
    bands: [g, r, i, z, y]
    raws: {paths: [raw], transfer: symlink}
    calibrations:
      - {dataset_type: bias, detector: 49, file: calib/bias/bias-049-e0.fits,
         valid_begin: "2016-01-01T00:00:00", valid_end: "2016-04-01T00:00:00"}
      - {dataset_type: flat, detector: 49, physical_filter: HSC-I, file: ...}
    refcat: {name: synth_refcat, shards: [{htm7: 147456, file: refcat/147456.fits}]}
    masks: [{tract: 9813, patch: 40, file: masks/9813/40.reg}]
    collections: {raw: HSC/raw/all, calib: HSC/calib, ...}
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from astropy.time import Time
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rc2_platform.core.yaml_safe import load_yaml, read_yaml_text
from rc2_platform.errors import ConfigError

__all__ = [
    "BOOTSTRAP_VERSION",
    "BootstrapConfig",
    "CalibrationEntry",
    "CollectionNames",
    "MaskEntry",
    "RawSpec",
    "RefcatShard",
    "RefcatSpec",
    "SkyMapSpec",
    "TransferMode",
    "load_bootstrap_config",
    "write_bootstrap_config",
]

#: Version of the bootstrap.yaml layout understood by this module.
BOOTSTRAP_VERSION = 1

TransferMode = Literal["direct", "copy", "hardlink", "symlink", "move"]
CalibrationType = Literal["bias", "dark", "flat"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_iso_tai(value: str | None) -> str | None:
    if value is None:
        return None
    problem = _iso_tai_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


@functools.lru_cache(maxsize=4096)
def _iso_tai_problem(value: str) -> str | None:
    # Cached: a survey's thousands of calibrations share a few validity edges, and an
    # astropy Time costs about a millisecond.
    try:
        Time(value, format="isot", scale="tai")
    except ValueError as exc:
        return f"{value!r} is not an ISO time like 2016-03-01T00:00:00 (TAI): {exc}"
    return None


class SkyMapSpec(_Model):
    """Which sky map to register: its registry name and its configuration."""

    name: str = Field(description="Registry name of the sky map, e.g. 'hsc_rings_v1'.")
    config: str = Field(
        description="Entry of rc2_platform/config/skymaps.yaml: 'hsc_rings_v1' (full) or "
        "'hsc_rings_v1_tiny' (8x coarser pixels, same tracts and patches)."
    )
    scope: Literal["listed", "all"] = Field(
        default="listed",
        description="Register only the config's 'tracts' (fast; the default) or all tracts "
        "and patches of the sky map (~18,938 tracts x 81 patches for hsc_rings_v1).",
    )

    @field_validator("config")
    @classmethod
    def _known_config(cls, value: str) -> str:
        from rc2_platform.skymap import skymap_config_names

        names = skymap_config_names()
        if value not in names:
            raise ValueError(f"unknown sky map config {value!r}; choose one of {names}")
        return value


class RawSpec(_Model):
    """Raw files to ingest: files and/or directories (searched recursively for ``*.fits``)."""

    paths: list[Path] = Field(min_length=1)
    transfer: TransferMode = "symlink"
    pattern: str = Field(default="*.fits", description="Glob for raw files inside directories.")

    def iter_files(self) -> Iterator[Path]:
        """Yield the raw files named by :attr:`paths` (directories expanded, sorted)."""
        for path in self.paths:
            if path.is_dir():
                yield from sorted(path.rglob(self.pattern))
            else:
                yield path


class CalibrationEntry(_Model):
    """One master calibration file with its validity range (``None`` = unbounded)."""

    dataset_type: CalibrationType
    detector: int = Field(ge=0)
    physical_filter: str | None = Field(
        default=None, description="Required for flats, absent for bias and dark."
    )
    file: Path
    valid_begin: str | None = Field(default=None, description="ISO time, TAI, inclusive.")
    valid_end: str | None = Field(default=None, description="ISO time, TAI, exclusive.")
    header_only: bool = Field(
        default=False,
        description="The file has a header and no pixels by design (the header-only rc2 "
        "preset); otherwise an image without pixels is refused as unusable.",
    )

    @field_validator("valid_begin", "valid_end")
    @classmethod
    def _check_times(cls, value: str | None) -> str | None:
        return _check_iso_tai(value)

    @model_validator(mode="after")
    def _check(self) -> CalibrationEntry:
        if self.dataset_type == "flat" and not self.physical_filter:
            raise ValueError(f"a flat needs a physical_filter (file {self.file})")
        if self.dataset_type != "flat" and self.physical_filter:
            raise ValueError(
                f"a {self.dataset_type} has no physical_filter (file {self.file}); remove it"
            )
        if self.valid_begin is not None and self.valid_end is not None:
            begin = Time(self.valid_begin, format="isot", scale="tai")
            end = Time(self.valid_end, format="isot", scale="tai")
            if end <= begin:
                raise ValueError(
                    f"valid_end {self.valid_end} is not after valid_begin {self.valid_begin} "
                    f"(file {self.file})"
                )
        return self


class RefcatShard(_Model):
    """One reference-catalog shard: the HTM level-7 pixel id and its FITS table."""

    htm7: int = Field(ge=0)
    file: Path


class RefcatSpec(_Model):
    """A sharded reference catalog (FITS tables with ra, dec, ``{band}_mag``, ``{band}_mag_err``)."""

    name: str
    shards: list[RefcatShard] = Field(default_factory=list)
    transfer: TransferMode = "copy"


class MaskEntry(_Model):
    """The bright-object mask file of one patch (see :mod:`rc2_platform.simulate.masks`)."""

    tract: int = Field(ge=0)
    patch: int = Field(ge=0)
    file: Path


class CollectionNames(_Model):
    """Names of the collections the bootstrap creates."""

    raw: str = "HSC/raw/all"
    calib: str = "HSC/calib"
    calib_run: str = "HSC/calib/run"
    refcats: str = "refcats"
    masks: str = "masks"
    skymaps: str = "skymaps"
    defaults: str = Field(
        default="HSC/defaults",
        description="CHAINED collection of all the above: the default input of a pipeline run.",
    )


class BootstrapConfig(_Model):
    """Everything ``rc2 bootstrap`` needs to build a repository.

    Paths are absolute after :func:`load_bootstrap_config`; in the file they may be
    relative to the file's directory.
    """

    version: int = BOOTSTRAP_VERSION
    instrument: str = "HSC"
    skymap: SkyMapSpec
    tracts: list[int] = Field(min_length=1)
    bands: list[str] = Field(min_length=1)
    raws: RawSpec
    calibrations: list[CalibrationEntry] = Field(default_factory=list)
    refcat: RefcatSpec | None = None
    masks: list[MaskEntry] = Field(default_factory=list)
    collections: CollectionNames = Field(default_factory=CollectionNames)
    truth: Path | None = Field(default=None, description="Truth catalog of a simulated survey.")

    @field_validator("version")
    @classmethod
    def _check_version(cls, value: int) -> int:
        if value != BOOTSTRAP_VERSION:
            raise ValueError(
                f"bootstrap.yaml version {value} is not supported (expected {BOOTSTRAP_VERSION})"
            )
        return value

    def files(self) -> Iterator[Path]:
        """Yield every file and raw directory that the config names."""
        yield from self.raws.paths
        for cal in self.calibrations:
            yield cal.file
        if self.refcat is not None:
            for shard in self.refcat.shards:
                yield shard.file
        for mask in self.masks:
            yield mask.file
        if self.truth is not None:
            yield self.truth

    def missing_files(self) -> list[Path]:
        """Return the named files (see :meth:`files`) that do not exist."""
        return [path for path in self.files() if not path.exists()]

    def resolved(self, base: Path) -> BootstrapConfig:
        """Return a copy whose relative paths are made absolute against ``base``."""
        base = Path(os.path.abspath(base))
        return _map_paths(
            self, lambda p: p if p.is_absolute() else Path(os.path.normpath(base / p))
        )

    def relative_to(self, base: Path) -> BootstrapConfig:
        """Return a copy whose paths under ``base`` are made relative to it."""

        base = Path(os.path.abspath(base))

        def rel(path: Path) -> Path:
            try:
                return Path(os.path.abspath(path)).relative_to(base)
            except ValueError:
                return path

        return _map_paths(self, rel)


def _map_paths(config: BootstrapConfig, func: Any) -> BootstrapConfig:
    data = config.model_dump()
    data["raws"]["paths"] = [func(Path(p)) for p in data["raws"]["paths"]]
    for cal in data["calibrations"]:
        cal["file"] = func(Path(cal["file"]))
    if data["refcat"] is not None:
        for shard in data["refcat"]["shards"]:
            shard["file"] = func(Path(shard["file"]))
    for mask in data["masks"]:
        mask["file"] = func(Path(mask["file"]))
    if data["truth"] is not None:
        data["truth"] = func(Path(data["truth"]))
    return BootstrapConfig.model_validate(data)


def _format_validation_error(path: Path, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return f"{path}: invalid bootstrap config: " + "; ".join(parts) + more


def load_bootstrap_config(path: str | Path, *, check_files: bool = False) -> BootstrapConfig:
    """Read and validate a ``bootstrap.yaml``; relative paths become absolute.

    Parameters
    ----------
    path
        The YAML file.
    check_files
        If true, also fail when a named file or raw directory does not exist.

    Returns
    -------
    BootstrapConfig
        The validated configuration with absolute paths.

    Raises
    ------
    ConfigError
        The file is missing, is not YAML, or a field is invalid; the message names the
        field (e.g. ``calibrations.3.detector``) and the file.
    """
    path = Path(path)
    try:
        text = read_yaml_text(path)
    except OSError as exc:
        raise ConfigError(f"cannot read bootstrap config {path}: {exc.strerror}") from None
    data = load_yaml(text, str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        config = BootstrapConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(path, exc)) from None
    config = config.resolved(path.parent)
    if check_files:
        missing = config.missing_files()
        if missing:
            shown = ", ".join(str(p) for p in missing[:3])
            raise ConfigError(
                f"{path}: {len(missing)} file(s) named in the config do not exist, e.g. {shown}"
            )
    return config


def write_bootstrap_config(config: BootstrapConfig, path: str | Path) -> Path:
    """Write ``config`` as YAML to ``path`` with paths relative to the file's directory.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    rel = config.relative_to(path.parent)
    data = rel.model_dump(mode="json", exclude_none=False)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    path.write_text(yaml.dump(data, Dumper=dumper, sort_keys=False, default_flow_style=None))
    return path
