"""Sky map configuration: a pydantic model and the shipped ``config/skymaps.yaml``."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rc2_platform.core.yaml_safe import load_yaml, read_yaml_text
from rc2_platform.errors import ConfigError

__all__ = ["SkyMapConfig", "load_skymap_config", "skymap_config_names"]


class SkyMapConfig(BaseModel):
    """Parameters of a rings sky map.

    Attributes
    ----------
    name : str
        Sky map name (the ``skymap`` dimension value), e.g. ``hsc_rings_v1``.
    num_rings : int
        Number of declination rings between the two polar caps.
    tract_overlap_arcsec : float
        Extra radius added around each tract's nominal area.
    pixel_scale_arcsec : float
        Coadd pixel scale.
    patch_inner_dimensions : tuple of int
        Inner (non-overlapping) patch size in pixels, (x, y).
    patch_border : int
        Border added around a patch's inner box to make its outer box (pixels).
    ra_start : float
        RA (degrees) of the first tract of every ring.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    num_rings: int = Field(gt=0)
    tract_overlap_arcsec: float = Field(ge=0)
    pixel_scale_arcsec: float = Field(gt=0)
    patch_inner_dimensions: tuple[int, int]
    patch_border: int = Field(ge=0)
    ra_start: float = 0.0

    def geometry_hash(self) -> bytes:
        """SHA-1 of the parameters (not the name): the ``skymap`` record's ``hash``."""
        params = self.model_dump(exclude={"name"})
        return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).digest()


class _SkyMapFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    skymaps: list[SkyMapConfig]


def _load_file(path: Path | None) -> dict[str, SkyMapConfig]:
    if path is None:
        text = resources.files("rc2_platform").joinpath("config/skymaps.yaml").read_text()
        source = "rc2_platform/config/skymaps.yaml"
    else:
        text, source = read_yaml_text(path), str(path)
    try:
        doc = _SkyMapFile.model_validate(load_yaml(text, source))
    except ValidationError as exc:
        raise ConfigError(f"invalid sky map configuration {source}: {_first(exc)}") from None
    return {c.name: c for c in doc.skymaps}


def skymap_config_names(path: Path | None = None) -> list[str]:
    """Names of the sky maps defined in ``path`` (the shipped file by default)."""
    return list(_load_file(path))


def load_skymap_config(name: str = "hsc_rings_v1", path: Path | None = None) -> SkyMapConfig:
    """Return the named sky map configuration.

    Raises
    ------
    ConfigError
        If the file is invalid or has no sky map of that name.
    """
    configs = _load_file(path)
    try:
        return configs[name]
    except KeyError:
        raise ConfigError(
            f"no sky map named {name!r}; known sky maps: {', '.join(configs)}"
        ) from None


def _first(exc: ValidationError) -> str:
    """The first problem of a pydantic error on one line: ``field.path: message``."""
    err = exc.errors()[0]
    return f"{'.'.join(str(x) for x in err['loc']) or '(top level)'}: {err['msg']}"
