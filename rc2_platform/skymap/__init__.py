"""Rings sky maps (``hsc_rings_v1`` and its coarse ``tiny`` twin): tracts and patches.

Public API::

    load_skymap(name="hsc_rings_v1") -> RingsSkyMap
    RingsSkyMap(config).tract(id) -> TractInfo; .find_tract(ra, dec); .find_patches(tract, region)
    tract_records(skymap) / patch_records(skymap) -> column arrays + encoded regions
"""

from __future__ import annotations

from pathlib import Path

from rc2_platform.skymap.bulk import (
    PatchRecords,
    TractRecords,
    iter_patch_records,
    patch_records,
    tract_records,
)
from rc2_platform.skymap.config import SkyMapConfig, load_skymap_config, skymap_config_names
from rc2_platform.skymap.rings import PatchInfo, PixelBox, RingsSkyMap, TractInfo

__all__ = [
    "PatchInfo",
    "PatchRecords",
    "PixelBox",
    "RingsSkyMap",
    "SkyMapConfig",
    "TractInfo",
    "TractRecords",
    "iter_patch_records",
    "load_skymap",
    "load_skymap_config",
    "patch_records",
    "skymap_config_names",
    "tract_records",
]


def load_skymap(name: str = "hsc_rings_v1", path: Path | None = None) -> RingsSkyMap:
    """Build the named sky map from the shipped ``config/skymaps.yaml`` (or ``path``)."""
    return RingsSkyMap(load_skymap_config(name, path))
