"""The HSC-like camera: focal-plane layout, detectors, filters and registry records.

The layout is configuration, shipped as ``rc2_platform/config/hsc_camera.yaml`` and
validated by the pydantic models below. :func:`load_camera` reads it once and caches it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rc2_platform.core.yaml_safe import load_yaml, read_yaml_text
from rc2_platform.errors import ConfigError, IngestError

__all__ = [
    "Camera",
    "CameraConfig",
    "Detector",
    "DetectorConfig",
    "FilterConfig",
    "load_camera",
]


class DetectorConfig(BaseModel):
    """One detector of the focal plane, as written in the camera YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(ge=0)
    name: str = Field(pattern=r"^[01]_\d\d$")
    purpose: Literal["SCIENCE", "FOCUS"]
    x: float  #: centre on the focal plane, unbinned pixels from the boresight
    y: float
    yaw: float  #: rotation of the pixel grid on the focal plane, degrees (multiple of 90)

    @model_validator(mode="after")
    def _check_yaw(self) -> DetectorConfig:
        if self.yaw % 90.0 != 0.0:
            raise ValueError(f"detector {self.id}: yaw {self.yaw} is not a multiple of 90 degrees")
        return self


class FilterConfig(BaseModel):
    """A physical filter and the abstract band it belongs to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    band: str


class CameraConfig(BaseModel):
    """The whole camera YAML document."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    class_name: str
    visit_max: int
    exposure_max: int
    detector_max: int
    pixel_size_um: float = Field(gt=0)
    pixel_scale_arcsec: float = Field(gt=0)
    detector_nx: int = Field(gt=0)
    detector_ny: int = Field(gt=0)
    filters: list[FilterConfig]
    detectors: list[DetectorConfig]

    @model_validator(mode="after")
    def _check_unique(self) -> CameraConfig:
        ids = [d.id for d in self.detectors]
        names = [d.name for d in self.detectors]
        if len(set(ids)) != len(ids) or len(set(names)) != len(names):
            raise ValueError("detector ids and names must be unique")
        if ids != sorted(ids):
            raise ValueError("detectors must be listed in increasing id order")
        return self


@dataclass(frozen=True, slots=True)
class Detector:
    """A detector: identity plus its placement on the focal plane.

    Attributes
    ----------
    id : int
        Detector number (0..111 for HSC).
    full_name : str
        Unique name, e.g. ``"1_53"``.
    raft, name_in_raft : str
        The two halves of ``full_name`` (``"1"``, ``"53"``).
    purpose : str
        ``"SCIENCE"`` or ``"FOCUS"``.
    x, y : float
        Centre on the focal plane in unbinned pixels from the boresight.
    yaw : float
        Rotation of the pixel grid on the focal plane in degrees.
    """

    id: int
    full_name: str
    raft: str
    name_in_raft: str
    purpose: str
    x: float
    y: float
    yaw: float

    def record(self, instrument: str) -> dict[str, Any]:
        """Return the registry ``detector`` record of this detector."""
        return {
            "instrument": instrument,
            "id": self.id,
            "full_name": self.full_name,
            "raft": self.raft,
            "name_in_raft": self.name_in_raft,
            "purpose": self.purpose,
        }


class Camera:
    """The validated camera: detectors by id/name, filters, geometry constants.

    Parameters
    ----------
    config : `CameraConfig`
        The validated camera document.
    """

    def __init__(self, config: CameraConfig):
        self.config = config
        self.name = config.name
        self.detector_nx = config.detector_nx
        self.detector_ny = config.detector_ny
        self.pixel_scale_arcsec = config.pixel_scale_arcsec
        self.detectors: dict[int, Detector] = {}
        for d in config.detectors:
            raft, name_in_raft = d.name.split("_")
            self.detectors[d.id] = Detector(
                d.id, d.name, raft, name_in_raft, d.purpose, d.x, d.y, d.yaw
            )
        self._by_name = {d.full_name: d for d in self.detectors.values()}
        self.filter_to_band: dict[str, str] = {f.name: f.band for f in config.filters}
        # Vectorized geometry: index = detector id.
        n = max(self.detectors) + 1
        self._xy = np.full((n, 2), np.nan)
        self._yaw = np.zeros(n)
        for det in self.detectors.values():
            self._xy[det.id] = (det.x, det.y)
            self._yaw[det.id] = det.yaw

    def detector(self, detector_id: int, filename: str | None = None) -> Detector:
        """Return a detector by id; raise `IngestError` naming the id (and file) if unknown."""
        try:
            return self.detectors[int(detector_id)]
        except (KeyError, ValueError, TypeError):
            where = f" in {filename}" if filename else ""
            raise IngestError(
                f"unknown detector {detector_id!r}{where}: {self.name} has detectors "
                f"0..{max(self.detectors)}; check the DET-ID/FRAMEID header"
            ) from None

    def detector_by_name(self, full_name: str) -> Detector:
        """Return a detector by its unique name (e.g. ``"1_53"``)."""
        try:
            return self._by_name[full_name]
        except KeyError:
            raise IngestError(f"unknown detector name {full_name!r} for {self.name}") from None

    def band_of(self, physical_filter: str, filename: str | None = None) -> str:
        """Return the band of a physical filter; `IngestError` naming it if unknown."""
        try:
            return self.filter_to_band[physical_filter]
        except KeyError:
            where = f" in {filename}" if filename else ""
            raise IngestError(
                f"unknown physical filter {physical_filter!r}{where}; known filters: "
                f"{', '.join(self.filter_to_band)}"
            ) from None

    @property
    def science_detector_ids(self) -> list[int]:
        """Ids of the science detectors, sorted."""
        return sorted(d.id for d in self.detectors.values() if d.purpose == "SCIENCE")

    def detector_geometry(
        self, detector_ids: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Return (centres ``(m, 2)`` in focal-plane pixels, yaws ``(m,)`` in degrees)."""
        ids = np.asarray(detector_ids, dtype=np.int64)
        if ids.size and (
            ids.min() < 0 or ids.max() >= len(self._yaw) or np.isnan(self._xy[ids, 0]).any()
        ):
            bad = [int(i) for i in ids if int(i) not in self.detectors]
            raise IngestError(f"unknown detector id(s) {bad} for {self.name}")
        return self._xy[ids], self._yaw[ids]

    def instrument_record(self) -> dict[str, Any]:
        """Return the registry ``instrument`` record."""
        c = self.config
        return {
            "name": c.name,
            "visit_max": c.visit_max,
            "exposure_max": c.exposure_max,
            "detector_max": c.detector_max,
            "class_name": c.class_name,
        }

    def filter_records(self) -> list[dict[str, Any]]:
        """Return the registry ``physical_filter`` records (instrument, name, band)."""
        return [
            {"instrument": self.name, "name": f, "band": b} for f, b in self.filter_to_band.items()
        ]

    def band_records(self) -> list[dict[str, Any]]:
        """Return the registry ``band`` records (name), one per distinct band."""
        return [{"name": b} for b in dict.fromkeys(self.filter_to_band.values())]

    def detector_records(self) -> list[dict[str, Any]]:
        """Return the registry ``detector`` records, sorted by id."""
        return [self.detectors[i].record(self.name) for i in sorted(self.detectors)]


def _read_config(path: Path | None) -> CameraConfig:
    if path is None:
        text = resources.files("rc2_platform").joinpath("config/hsc_camera.yaml").read_text()
        source = "rc2_platform/config/hsc_camera.yaml"
    else:
        text = read_yaml_text(path)
        source = str(path)
    try:
        return CameraConfig.model_validate(load_yaml(text, source))
    except ValidationError as exc:
        raise ConfigError(f"invalid camera configuration {source}: {_first(exc)}") from None


@functools.lru_cache(maxsize=8)
def load_camera(path: Path | None = None) -> Camera:
    """Load (and cache) a camera; the shipped HSC layout by default.

    Parameters
    ----------
    path : `pathlib.Path`, optional
        Another camera YAML file of the same schema.

    Raises
    ------
    ConfigError
        If the file does not validate.
    """
    return Camera(_read_config(path))


def _first(exc: ValidationError) -> str:
    """The first problem of a pydantic error on one line: ``field.path: message``."""
    err = exc.errors()[0]
    return f"{'.'.join(str(x) for x in err['loc']) or '(top level)'}: {err['msg']}"
