"""Validation of a pipeline run against the synthetic truth (issue 6).

Public API::

    ValidationConfig, Metric, ValidationReport, ValidationError
    robust_scatter(values) -> float
    match_to_truth(catalog, truth, radius_arcsec) -> (index, separation)
    compute_metrics(catalogs_by_band, truth, config=None, in_footprint=None) -> ValidationReport
    validate_catalogs(per_patch_catalogs, truth, sky_map, config=None) -> (report, patches)
    load_run_catalogs(butler, run) -> (per_patch_catalogs, sky_map)
    read_truth_file(path) -> Table
    write_figure(report, patches, path, run=None) -> Path
    patch_metrics(report, truth, patches) -> Table;  write_patch_maps(table, config, path)

Sits at the tasks' level: uses astropy, numpy, matplotlib (Agg) and the sky map; no Dagster.
"""

from __future__ import annotations

from rc2_platform.validate.figure import write_figure
from rc2_platform.validate.metrics import (
    Metric,
    ValidationConfig,
    ValidationReport,
    compute_metrics,
    match_to_truth,
    robust_scatter,
)
from rc2_platform.validate.patch_maps import patch_metrics, write_patch_maps
from rc2_platform.validate.report import (
    ValidationError,
    load_run_catalogs,
    read_truth_file,
    validate_catalogs,
    validate_run,
)

__all__ = [
    "validate_run",
    "Metric",
    "ValidationConfig",
    "ValidationError",
    "ValidationReport",
    "compute_metrics",
    "load_run_catalogs",
    "match_to_truth",
    "patch_metrics",
    "read_truth_file",
    "robust_scatter",
    "validate_catalogs",
    "write_figure",
    "write_patch_maps",
]
