"""Ingest: instrument, sky map, raws, visits, calibrations, refcats, masks, bootstrap.

Public API (each step takes an open `Butler` and returns an `IngestResult`)::

    register_instrument(butler, name="HSC")
    register_skymap(butler, name, config_name=None, *, tracts=None, run="skymaps")
    index_raws(files, processes=2) -> list[RawInfo]
    ingest_raws(butler, files, *, run="HSC/raw/all", transfer="symlink", processes=2,
                tracts=None, bands=None, skymap=None, progress=None)
    define_visits(butler, *, where="", raw_run="HSC/raw/all", tracts=None, bands=None,
                  skymap=None)
    ingest_calibrations(butler, entries, *, run=None, collection="HSC/calib",
                        instrument="HSC", transfer="copy")
    ingest_refcats(butler, shards, *, name="synth_refcat", run="refcats",
                   only_overlapping=True, transfer="copy")
    ingest_bright_object_masks(butler, masks, *, skymap=None, run="masks",
                               only_overlapping=True)
    register_default_chain(butler, CollectionNames())
    bootstrap(config_path, repo, registry_url=None, *, processes=2, progress=True)
        -> BootstrapSummary

See ``docs/ingest.md``.
"""

from __future__ import annotations

from rc2_platform.ingest._common import IngestResult
from rc2_platform.ingest.bootstrap import (
    BootstrapSummary,
    bootstrap,
    register_default_chain,
    run_bootstrap,
)
from rc2_platform.ingest.bootstrap_config import (
    BootstrapConfig,
    CalibrationEntry,
    CollectionNames,
    MaskEntry,
    RefcatShard,
    load_bootstrap_config,
)
from rc2_platform.ingest.calibs import ingest_calibrations
from rc2_platform.ingest.instrument import register_instrument
from rc2_platform.ingest.masks import ingest_bright_object_masks
from rc2_platform.ingest.raws import RawInfo, expand_files, index_raws, ingest_raws
from rc2_platform.ingest.refcats import ingest_refcats
from rc2_platform.ingest.skymap import register_skymap
from rc2_platform.ingest.truth import TRUTH_DATASET, find_truth, ingest_truth
from rc2_platform.ingest.visits import define_visits

__all__ = [
    "TRUTH_DATASET",
    "find_truth",
    "ingest_truth",
    "BootstrapConfig",
    "BootstrapSummary",
    "CalibrationEntry",
    "CollectionNames",
    "IngestResult",
    "MaskEntry",
    "RawInfo",
    "RefcatShard",
    "bootstrap",
    "define_visits",
    "expand_files",
    "index_raws",
    "ingest_bright_object_masks",
    "ingest_calibrations",
    "ingest_raws",
    "ingest_refcats",
    "load_bootstrap_config",
    "register_default_chain",
    "register_instrument",
    "register_skymap",
    "run_bootstrap",
]
