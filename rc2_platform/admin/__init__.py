"""Data management of a repository: removals, certification and artifact retrieval.

Library calls behind ``rc2 remove-runs``, ``prune-datasets``, ``remove-dataset-type``,
``certify-calibrations``, ``decertify``, ``retrieve-artifacts`` and ``fsck``. Each takes an open
:class:`~rc2_platform.butler.Butler`, checks everything before changing anything
(refusals name the collections that still use what would go), supports a dry run
where it removes or moves anything, and returns a result whose ``rows`` are plain
dictionaries (what the commands print). SQL stays in the registry.
"""

from __future__ import annotations

from rc2_platform.admin.artifacts import RetrieveResult, retrieve_artifacts
from rc2_platform.admin.calibration import (
    CertifyResult,
    DecertifyResult,
    certify_calibrations,
    decertify,
    parse_time,
)
from rc2_platform.admin.fsck import FsckReport, check_repository
from rc2_platform.admin.removal import (
    PruneResult,
    RemoveRunsResult,
    RemoveTypeResult,
    prune_datasets,
    remove_dataset_type,
    remove_runs,
)

__all__ = [
    "CertifyResult",
    "DecertifyResult",
    "FsckReport",
    "PruneResult",
    "RemoveRunsResult",
    "RemoveTypeResult",
    "RetrieveResult",
    "certify_calibrations",
    "check_repository",
    "decertify",
    "parse_time",
    "prune_datasets",
    "remove_dataset_type",
    "remove_runs",
    "retrieve_artifacts",
]
