"""The checks on a tract × band of a RUN's outputs: structure and validation.

Structural checks (from :func:`~rc2_platform.monitor.outputs.band_summary`):

- ``outputs_registered``: every expected output dataset of the band (and every
  band-spanning one) is registered;
- ``files_on_disk``: each registered dataset's file exists;
- ``catalogs_non_empty``: no catalog (FITS table) of the band is empty;
- ``no_failed_quanta``: no quantum of the band failed or is blocked.

Validation checks (:func:`validate_tract`, against the repository's ``truth_catalog``):
``photometric_median_offset``, ``photometric_scatter``, ``astrometric_scatter`` and
``completeness`` of the band, with the bounds of a
:class:`~rc2_platform.validate.ValidationConfig`.

Library call first::

    report, patches = validate_tract(repo, run, tract, ValidationConfig(), png="fig.png")
    outcomes = [*structural_outcomes(summary, "g", OUTPUTS),
                *validation_outcomes(report, "g")]
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rc2_platform.execution.execution_config import ExecutionConfig
from rc2_platform.monitor.outputs import TRACT_WIDE, band_summary, failure_line

if TYPE_CHECKING:  # astropy, scipy and the ingest package load when a validation runs
    from rc2_platform.validate.metrics import ValidationConfig, ValidationReport

__all__ = [
    "STRUCTURAL_CHECKS",
    "VALIDATION_CHECKS",
    "VALIDATION_MODULES",
    "CheckOutcome",
    "structural_outcomes",
    "tract_checks",
    "validate_tract",
    "validation_outcomes",
    "warm_validation_imports",
]

#: What a validation imports (astropy tables and coordinates, scipy, the ingest package for
#: the truth catalog): ~1 CPU-s, imported on first use, not with this module.
VALIDATION_MODULES = (
    "rc2_platform.ingest.truth",
    "rc2_platform.validate.metrics",
    "rc2_platform.validate.report",
)

#: Check name -> metric name of :mod:`rc2_platform.validate.metrics`.
VALIDATION_CHECKS = {
    "photometric_median_offset": "median_offset",
    "photometric_scatter": "scatter",
    "astrometric_scatter": "astrometric_scatter",
    "completeness": "completeness",
}
STRUCTURAL_CHECKS = (
    "outputs_registered",
    "files_on_disk",
    "catalogs_non_empty",
    "no_failed_quanta",
)


@dataclass(frozen=True)
class CheckOutcome:
    """One check of one tract × band: its name, verdict, one-line description, figures."""

    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def warm_validation_imports() -> threading.Thread:
    """Import :data:`VALIDATION_MODULES` in a daemon thread; returns the started thread.

    A long-running caller that validates at its end (the whole-graph step, whose process
    mostly waits on its jobs) starts this at its beginning, so that the imports overlap
    the jobs instead of following the last one. Failures are left to the real import.
    Not for a process that forks while the thread may run (a fork inherits the import
    locks the thread holds).
    """

    def work() -> None:
        for name in VALIDATION_MODULES:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the validation's own import reports it
                return

    thread = threading.Thread(target=work, name="warm-validation-imports", daemon=True)
    thread.start()
    return thread


def validate_tract(
    repo: str | Path,
    run: str,
    tract: int | str,
    config: ValidationConfig | None = None,
    png: str | Path | None = None,
) -> ValidationReport:
    """Validate the tract's ``deepCoadd_forced_src`` of ``run`` against the repository's
    ``truth_catalog`` (optionally drawing the validation figure with its coverage map).

    Raises
    ------
    ValidationError
        If the repository has no truth catalog or the RUN no catalogs of the tract.
    """
    from rc2_platform.butler import Butler
    from rc2_platform.ingest.truth import find_truth
    from rc2_platform.validate.report import (
        ValidationError,
        load_run_catalogs,
        read_truth_file,
        validate_catalogs,
    )

    with Butler(repo) as butler:
        truth_path = find_truth(butler)
        if truth_path is None:
            raise ValidationError(
                f"repository {repo} has no truth_catalog dataset (RUN <instrument>/truth): "
                "bootstrap it from a survey whose bootstrap.yaml names truth:"
            )
        catalogs, sky_map = load_run_catalogs(butler, run)
    mine = {k: v for k, v in catalogs.items() if k[0] == int(tract)}
    if not mine:
        raise ValidationError(f"RUN {run!r} has no deepCoadd_forced_src of tract {tract}")
    report, patches = validate_catalogs(mine, read_truth_file(truth_path), sky_map, config)
    if png is not None:
        from rc2_platform.validate.figure import write_figure

        write_figure(report, patches, png, run=run)
    return report


def validation_outcomes(
    report: ValidationReport | None, band: str, error: str | None = None
) -> list[CheckOutcome]:
    """The four validation checks of ``band`` (all failed with ``error`` without a report)."""
    out = []
    for check, metric_name in VALIDATION_CHECKS.items():
        metric = report.metric(band, metric_name) if report is not None else None
        if metric is None:
            why = error or f"no {metric_name} measured in band {band} (no matched stars)"
            out.append(CheckOutcome(check, False, why))
            continue
        row = metric.to_row()
        text = f"{metric_name} = {row['value']} {metric.unit} ({metric.bound}, n = {metric.n})"
        out.append(CheckOutcome(check, metric.passed, text, row))
    return out


def _counts(summary: Mapping[str, Mapping[str, Any]], band: str, key: str, name: str) -> int:
    return sum(int(summary[b][key].get(name, 0)) for b in (band, TRACT_WIDE) if b in summary)


def structural_outcomes(
    summary: Mapping[str, Mapping[str, Any]], band: str, dataset_types: Sequence[str]
) -> list[CheckOutcome]:
    """The structural checks of ``band`` over the outputs ``dataset_types``."""
    registered = {n: _counts(summary, band, "datasets", n) for n in dataset_types}
    expected = {n: _counts(summary, band, "expected", n) for n in dataset_types}
    on_disk = {n: _counts(summary, band, "on_disk", n) for n in dataset_types}
    empty = {n: _counts(summary, band, "empty", n) for n in dataset_types}
    missing = {n: expected[n] - registered[n] for n in dataset_types if registered[n] < expected[n]}
    gone = {n: registered[n] - on_disk[n] for n in dataset_types if on_disk[n] < registered[n]}
    empties = {n: k for n, k in empty.items() if k}
    own = summary.get(band, {})
    failed, blocked = int(own.get("failed", 0)), int(own.get("blocked", 0))
    failures = [failure_line(f) for f in own.get("failures", [])]
    return [
        CheckOutcome(
            "outputs_registered",
            not missing,
            f"datasets not registered: {missing}"
            if missing
            else "every expected dataset is registered",
            {"registered": registered, "expected": expected},
        ),
        CheckOutcome(
            "files_on_disk",
            not gone,
            f"registered datasets without their file: {gone}" if gone else "every file exists",
            {"on_disk": on_disk},
        ),
        CheckOutcome(
            "catalogs_non_empty",
            not empties,
            f"empty catalogs: {empties}" if empties else "no catalog is empty",
            {"empty": empty},
        ),
        CheckOutcome(
            "no_failed_quanta",
            failed == 0 and blocked == 0,
            f"{failed} quanta failed, {blocked} blocked" + (f": {failures[0]}" if failures else ""),
            {"failed": failed, "blocked": blocked, "failures": failures[:20]},
        ),
    ]


def tract_checks(
    repo: str | Path,
    run: str,
    graph_path: str | Path,
    tract: int | str,
    bands: Sequence[str],
    dataset_types: Sequence[str],
    exec_config: ExecutionConfig,
    config: ValidationConfig | None = None,
    *,
    summary: Mapping[str, Mapping[str, Any]] | None = None,
    png: str | Path | None = None,
) -> dict[str, list[CheckOutcome]]:
    """Every check of every band of a tract of ``run`` (executed from ``graph_path``).

    ``summary`` is :func:`band_summary`'s (computed from the RUN's journal and provenance
    when not given). A validation that cannot run (no truth, no catalogs) fails the four
    validation checks with its reason.
    """
    if summary is None:
        from rc2_platform.execution.report import quantum_states
        from rc2_platform.execution.run_state import load_graph_and_plan
        from rc2_platform.execution.stages import Ledger

        graph, _plan = load_graph_and_plan(graph_path, exec_config)
        states = {i: s for i, s in quantum_states(repo, run).items() if s.is_final}
        ledger = Ledger(str(tract), str(repo), str(graph_path), run, len(graph), states=states)
        summary = band_summary(repo, ledger, dataset_types, exec_config)
    from rc2_platform.validate.report import ValidationError

    report: ValidationReport | None = None
    error = None
    try:
        report = validate_tract(repo, run, tract, config, png)
    except ValidationError as exc:
        error = str(exc)
    except KeyError as exc:  # catalogs without the measured columns (e.g. stand-in tasks)
        error = f"RUN {run!r}: deepCoadd_forced_src of tract {tract} lacks column {exc}"
    return {
        band: [
            *structural_outcomes(summary, band, dataset_types),
            *validation_outcomes(report, band, error),
        ]
        for band in bands
    }
