"""Simulation presets: YAML files shipped in ``rc2_platform/config/simulate_*.yaml``.

A preset says which tracts and bands are observed, how many dithered visits per band,
which detectors are read out, when, and (for pixel presets) the camera and sky
parameters used to render raws.  :func:`load_preset` reads a preset by name (``tiny``,
``rc2``) or from a path and validates it with :class:`SimulationPreset`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rc2_platform.core.yaml_safe import load_yaml, read_yaml_text
from rc2_platform.errors import ConfigError
from rc2_platform.simulate.faults import FaultPlan

__all__ = [
    "CalibEpochs",
    "CameraSettings",
    "CatalogSettings",
    "SimulationPreset",
    "TractPlan",
    "available_presets",
    "load_preset",
]

#: Physical filter of each band (the primary HSC filters).
DEFAULT_FILTERS = {"g": "HSC-G", "r": "HSC-R", "i": "HSC-I", "z": "HSC-Z", "y": "HSC-Y"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TractPlan(_Model):
    """Visits aimed at one tract.

    Pointings follow a sunflower (Fermat spiral) pattern of radius ``dither_radius_deg``
    around the tract centre (or, with ``patch_block``, around the centre of that block of
    patches), rotated by a different phase per band.
    """

    tract: int = Field(ge=0)
    visits_per_band: dict[str, int]
    dither_radius_deg: float = Field(ge=0.0)
    patch_block: tuple[int, int, int, int] | None = Field(
        default=None, description="(x0, y0, nx, ny) of the patches to cover, tiny preset only."
    )
    first_visit: int = Field(default=1000, ge=0, description="First visit id (ids step by 2).")


class CalibEpochs(_Model):
    """Validity epochs (ISO dates, TAI) of master calibrations: n epochs need n+1 edges."""

    bias: list[str] = Field(min_length=2)
    dark: list[str] = Field(min_length=2)
    flat: list[str] = Field(min_length=2)


class CameraSettings(_Model):
    """Detector electronics and sky of rendered raws (pixel presets)."""

    binning: int = Field(default=8, ge=1)
    gain: float = Field(default=3.0, gt=0, description="electrons per ADU")
    read_noise: float = Field(default=4.5, ge=0, description="electrons")
    bias_level: float = Field(default=1000.0, description="ADU, overscan level")
    saturation: float = Field(default=60000.0, description="ADU, raw value where pixels clip")
    overscan_columns: int = Field(default=16, ge=1)
    dark_current: float = Field(default=0.02, ge=0, description="ADU/s per (binned) pixel")
    hot_pixels: int = Field(default=5, ge=0)
    bad_columns: int = Field(default=2, ge=0)
    cosmic_rays_max: int = Field(default=2, ge=0)
    flat_vignetting: float = Field(default=0.12, ge=0, lt=1)
    flat_pixel_rms: float = Field(default=0.01, ge=0)
    fwhm_arcsec: tuple[float, float] = (3.2, 3.8)
    poisson_normal_above: float | None = Field(
        default=None,
        gt=0,
        description="Electrons above which photon noise is drawn from the normal "
        "approximation of the Poisson law (faster); None: exact Poisson everywhere.",
    )
    sky_adu_per_s: dict[str, float]
    zero_points: dict[str, float] = Field(
        description="Magnitude giving 1 ADU/s in a bias-, dark- and flat-corrected image."
    )


class CatalogSettings(_Model):
    """The synthetic sky: stars with a power-law magnitude distribution, a few galaxies."""

    stars: int = Field(ge=1)
    galaxies: int = Field(default=0, ge=0)
    mag_range: tuple[float, float] = (16.5, 24.0)
    margin_deg: float = Field(default=0.1, ge=0, description="Padding around the covered area.")
    bright_mask_mag: float = Field(default=18.0, description="Stars brighter get a mask circle.")


class SimulationPreset(_Model):
    """A validated simulation preset."""

    name: str
    kind: Literal["pixels", "headers"]
    instrument: str = "HSC"
    skymap: str = Field(default="hsc_rings_v1", description="Entry of config/skymaps.yaml.")
    filters: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_FILTERS))
    tracts: list[TractPlan] = Field(min_length=1)
    detectors: list[int] | Literal["science"] = "science"
    exptime: float = Field(default=30.0, gt=0)
    start_date: str = Field(description="First night (ISO date); visits are spread over nights.")
    nights: int = Field(default=2, ge=1)
    night_spacing_days: float = Field(default=30.0, gt=0)
    calib_epochs: CalibEpochs
    camera: CameraSettings | None = None
    catalog: CatalogSettings | None = None
    refcat_name: str = "synth_refcat"
    refcat_stars_per_shard: int = Field(default=20, ge=0, description="Header presets only.")
    faults: FaultPlan | None = Field(
        default=None, description="Faults written into the raws (pixel presets only)."
    )

    @model_validator(mode="after")
    def _check(self) -> SimulationPreset:
        if self.kind == "pixels" and (self.camera is None or self.catalog is None):
            raise ValueError(f"preset {self.name!r}: a pixel preset needs camera and catalog")
        if self.kind != "pixels" and self.faults is not None:
            raise ValueError(f"preset {self.name!r}: faults need a pixel preset")
        for plan in self.tracts:
            unknown = set(plan.visits_per_band) - set(self.filters)
            if unknown:
                raise ValueError(
                    f"tract {plan.tract}: bands {sorted(unknown)} have no physical filter in "
                    f"'filters' ({sorted(self.filters)})"
                )
        if self.camera is not None:
            for field in ("zero_points", "sky_adu_per_s"):
                missing = set(self.bands) - set(getattr(self.camera, field))
                if missing:
                    raise ValueError(f"camera.{field} lacks bands {sorted(missing)}")
        return self

    @property
    def bands(self) -> list[str]:
        """Bands observed in any tract, in filter order."""
        used = {b for plan in self.tracts for b, n in plan.visits_per_band.items() if n > 0}
        return [b for b in self.filters if b in used]

    def tract_ids(self) -> list[int]:
        """Tract ids of the plan, in order."""
        return [plan.tract for plan in self.tracts]


def available_presets() -> list[str]:
    """Names of the presets shipped with the package."""
    config_dir = resources.files("rc2_platform") / "config"
    names = [p.name for p in config_dir.iterdir() if p.name.startswith("simulate_")]
    return sorted(n.removeprefix("simulate_").removesuffix(".yaml") for n in names)


def load_preset(name_or_path: str | Path) -> SimulationPreset:
    """Load a preset by name (``tiny``, ``rc2``) or from a YAML file.

    Raises
    ------
    ConfigError
        Unknown preset name, unreadable file, or an invalid field (named in the message).
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text, where = read_yaml_text(path), str(path)
    else:
        resource = resources.files("rc2_platform") / "config" / f"simulate_{name_or_path}.yaml"
        if not resource.is_file():
            raise ConfigError(
                f"unknown simulation preset {str(name_or_path)!r}; "
                f"choose one of {available_presets()} or give a YAML file"
            )
        text, where = resource.read_text(), f"preset {name_or_path}"
    try:
        data = load_yaml(text, where)
        return SimulationPreset.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise ConfigError(f"{where}: {loc}: {err['msg']}") from None
