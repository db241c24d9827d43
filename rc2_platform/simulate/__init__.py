"""Synthetic survey: a pixel-level mini-RC2 (``tiny``) and RC2-scale header-only (``rc2``).

Public API::

    simulate(preset, out_dir, *, seed=1, tracts=None, scale=None, max_detectors=None,
             workers=1, overwrite=False) -> SimulationResult
    load_preset(name_or_path) -> SimulationPreset;  available_presets() -> list[str]
    read_truth(path, hdu="TRUTH") -> astropy Table
    read_mask_file(path) -> list[MaskCircle]
    read_shard(path) -> astropy Table (reference-catalog shard)

``simulate`` writes raws, master calibrations, reference-catalog shards, bright-object
masks, a truth catalog and ``bootstrap.yaml`` (see
:mod:`rc2_platform.ingest.bootstrap_config`).  Every number is determined by the preset
and ``seed``.  See ``docs/simulate.md``.
"""

from __future__ import annotations

from rc2_platform.simulate.catalog import read_truth
from rc2_platform.simulate.masks import MaskCircle, read_mask_file
from rc2_platform.simulate.presets import SimulationPreset, available_presets, load_preset
from rc2_platform.simulate.refcat import read_shard
from rc2_platform.simulate.survey import SimulationResult, simulate

__all__ = [
    "MaskCircle",
    "SimulationPreset",
    "SimulationResult",
    "available_presets",
    "load_preset",
    "read_mask_file",
    "read_shard",
    "read_truth",
    "simulate",
]
