"""``rc2 validate REPO RUN``: compare a run's forced photometry with the truth."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from rc2_platform.cli.common import (
    EXIT_PARTIAL,
    RepoCommand,
    emit_rows,
    format_option,
    handles_errors,
    print_note,
    repo_argument,
)

_COLUMNS = ("band", "metric", "value", "bound", "unit", "n", "result")


def _default_truth(repo: Path) -> Path | None:
    """The repository's ``truth_catalog`` dataset, else the truth file a bootstrap YAML in
    the repository names (``truth:``), if any."""
    from rc2_platform.butler import Butler
    from rc2_platform.core.yaml_safe import read_yaml
    from rc2_platform.ingest.truth import find_truth

    with Butler(repo) as butler:
        found = find_truth(butler)
    if found is not None:
        return found
    for name in ("bootstrap.yaml", "bootstrap_config.yaml"):
        path = repo / name
        if path.is_file():
            data: Any = read_yaml(path) or {}
            truth = data.get("truth") if isinstance(data, dict) else None
            if truth:
                base = Path(str(data.get("root", path.parent)))
                return (base / str(truth)).resolve()
    marker = repo / "truth_path.txt"
    if marker.is_file():
        return Path(marker.read_text().strip())
    return None


@click.command("validate", cls=RepoCommand)
@repo_argument
@click.argument("run")
@click.option(
    "--truth",
    type=click.Path(path_type=Path),
    default=None,
    help="Truth catalog FITS (default: the repository's truth_catalog dataset).",
)
@click.option(
    "--png",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the residual/coverage figure to this PNG file.",
)
@click.option(
    "--patch-png",
    type=click.Path(path_type=Path),
    default=None,
    help="Write maps of every metric per patch and band to this PNG file.",
)
@click.option(
    "--bright-mag",
    type=float,
    default=21.0,
    show_default=True,
    help="Stars brighter than this enter photometry and astrometry.",
)
@click.option(
    "--depth-mag",
    type=float,
    default=None,
    help=(
        "Completeness is measured to this magnitude (default: per band, where the "
        "coadds' 5-sigma point-source depth puts S/N 10; 23 if they state none)."
    ),
)
@click.option("--strict", is_flag=True, help="Exit 3 if any metric fails (default: exit 0).")
@format_option
@handles_errors
def validate(
    repo: str,
    run: str,
    truth: Path | None,
    png: Path | None,
    patch_png: Path | None,
    bright_mag: float,
    depth_mag: float | None,
    strict: bool,
    as_json: bool,
) -> None:
    """Match RUN's deepCoadd_forced_src objects in REPO to the truth and print the metrics."""
    from rc2_platform.validate import ValidationConfig, ValidationError, validate_run

    repo_path = Path(repo)
    truth_path = truth or _default_truth(repo_path)
    if truth_path is None:
        raise ValidationError(f"no truth catalog recorded for repository {repo}; pass --truth FILE")
    config = ValidationConfig(bright_mag=bright_mag, depth_mag=depth_mag)
    report = validate_run(repo_path, run, truth_path, config, png, patch_png)
    emit_rows(report.rows(), _COLUMNS, as_json=as_json, title=f"validation of {run}")
    if png is not None:
        print_note(f"figure written to {png}")
    if patch_png is not None:
        print_note(f"per-patch maps written to {patch_png}")
    if strict and not report.passed:
        print_note("validation FAILED")
        sys.exit(EXIT_PARTIAL)
