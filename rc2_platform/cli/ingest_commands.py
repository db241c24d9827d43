"""``rc2 bootstrap``, ``rc2 ingest-raws``, ``rc2 define-visits`` and the other ingest commands.

Every command takes the repository first. A command whose items partly failed lists
each failure with its reason on stderr and exits 3; if every item failed it exits 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rc2_platform.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_PARTIAL,
    RepoCommand,
    emit_json,
    emit_rows,
    escape_controls,
    format_option,
    handles_errors,
    json_option,
    repo_argument,
    stderr,
)
from rc2_platform.errors import ConfigError

if TYPE_CHECKING:
    from rc2_platform.butler import Butler
    from rc2_platform.ingest import CalibrationEntry, IngestResult

_COLUMNS = ["step", "collection", "ingested", "skipped", "failed", "seconds"]
_TRANSFERS = click.Choice(["direct", "copy", "hardlink", "symlink", "move"])
_TRANSFER_HELP = (
    "How files enter the datastore: direct (use in place), copy, hardlink, symlink or move."
)


def _report(result: IngestResult, as_json: bool) -> None:
    """Print the result row (stdout) and every failure with its reason (stderr)."""
    if as_json:
        emit_json(result.as_dict())
    else:
        emit_rows([result.as_dict()], _COLUMNS, as_json=False)
    for item, reason in result.failed:
        click.echo(escape_controls(f"failed: {item}: {reason}"), err=True)


def _exit_for(result: IngestResult) -> None:
    """Exit 1 if every item failed, 3 if some did (the others are in the repository)."""
    if not result.failed:
        return
    sys.exit(EXIT_PARTIAL if result.ingested or result.skipped else EXIT_BAD_INPUT)


def _open(repo: str) -> Butler:
    from rc2_platform.butler import Butler

    return Butler(repo)


@click.command("bootstrap", cls=RepoCommand)
@repo_argument
@click.argument("config", type=click.Path(dir_okay=False))
@click.option(
    "--registry-url",
    default=None,
    help="Server registry URL for a new repository (default: SQLite inside REPO).",
)
@click.option(
    "--processes",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes reading raw headers and writing datasets.",
)
@json_option
@handles_errors
def bootstrap_command(
    repo: str, config: str, registry_url: str | None, processes: int, as_json: bool
) -> None:
    """Build (or complete) repository REPO from CONFIG, a bootstrap.yaml.

    Creates REPO if needed, then registers the instrument and sky map, ingests
    calibrations, reference catalogs, raws and masks and defines visits; re-running
    changes nothing, and repairs what a killed bootstrap left (files without registry
    rows are adopted if identical to their source, else replaced). Exits 3 if some items
    failed (each listed on stderr), 1 if every item failed.
    """
    from rc2_platform.ingest import bootstrap

    summary = bootstrap(
        config, repo, registry_url, processes=processes, progress=not as_json,
        console=stderr(),
    )  # fmt: skip
    if as_json:
        emit_json(summary.as_dict())
    for step, item, reason in summary.failed:
        click.echo(escape_controls(f"failed [{step}]: {item}: {reason}"), err=True)
    if summary.failed:
        sys.exit(EXIT_PARTIAL if summary.ingested or summary.skipped else EXIT_BAD_INPUT)


@click.command("ingest-raws")
@repo_argument
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--run", default="HSC/raw/all", show_default=True, help="RUN collection.")
@click.option(
    "--transfer", type=_TRANSFERS, default="symlink", show_default=True, help=_TRANSFER_HELP
)
@click.option(
    "--processes",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes reading headers.",
)
@click.option(
    "--tract", "tracts", multiple=True, type=int, help="Only raws overlapping it (repeatable)."
)
@click.option("--band", "bands", multiple=True, help="Only raws of this band (repeatable).")
@click.option("--skymap", default=None, help="Sky map of --tract (default: the only one).")
@format_option
@handles_errors
def ingest_raws_command(
    repo: str,
    files: tuple[str, ...],
    run: str,
    transfer: str,
    processes: int,
    tracts: tuple[int, ...],
    bands: tuple[str, ...],
    skymap: str | None,
    as_json: bool,
) -> None:
    """Ingest raw FITS FILES (or directories) into REPO; failures are listed with the reason.

    Exits 3 if some files failed (the others are ingested), 1 if every file failed or
    FILES name no *.fits file at all.
    """
    from rc2_platform.errors import IngestError
    from rc2_platform.ingest import ingest_raws
    from rc2_platform.ingest.raws import expand_files

    if not expand_files(files):
        raise IngestError(
            f"no raw files: {', '.join(files)} hold no *.fits file; give raw FITS files "
            "or folders holding them"
        )
    with _open(repo) as butler:
        result = ingest_raws(
            butler, files, run=run, transfer=transfer, processes=processes,
            tracts=list(tracts) or None, bands=list(bands) or None, skymap=skymap,
        )  # fmt: skip
    _report(result, as_json)
    _exit_for(result)


@click.command("define-visits")
@repo_argument
@click.option("--where", default="", help="Where-expression on exposures, e.g. \"band = 'g'\".")
@click.option("--raw-run", default="HSC/raw/all", show_default=True, help="RUN holding the raws.")
@click.option(
    "--tract",
    "tracts",
    multiple=True,
    type=int,
    help="Only exposures overlapping this tract (repeatable).",
)
@click.option("--band", "bands", multiple=True, help="Only exposures in this band (repeatable).")
@click.option("--skymap", default=None, help="Sky map of --tract (default: the only one).")
@format_option
@handles_errors
def define_visits_command(
    repo: str,
    where: str,
    raw_run: str,
    tracts: tuple[int, ...],
    bands: tuple[str, ...],
    skymap: str | None,
    as_json: bool,
) -> None:
    """Define one visit per exposure, with detector regions and their overlaps."""
    from rc2_platform.ingest import define_visits

    with _open(repo) as butler:
        result = define_visits(
            butler, where=where, raw_run=raw_run, tracts=list(tracts) or None,
            bands=list(bands) or None, skymap=skymap,
        )  # fmt: skip
    _report(result, as_json)
    _exit_for(result)


@click.command("register-instrument")
@repo_argument
@click.option("--name", default="HSC", show_default=True, help="Instrument to register.")
@format_option
@handles_errors
def register_instrument_command(repo: str, name: str, as_json: bool) -> None:
    """Register the instrument, its bands, physical filters and detectors."""
    from rc2_platform.ingest import register_instrument

    with _open(repo) as butler:
        _report(register_instrument(butler, name), as_json)


@click.command("register-skymap")
@repo_argument
@click.option("--name", default="hsc_rings_v1", show_default=True, help="Registry name.")
@click.option(
    "--config", "config_name", default=None, help="Entry of skymaps.yaml (default: NAME)."
)
@click.option("--tract", "tracts", multiple=True, type=int, help="Only these tracts (default all).")
@format_option
@handles_errors
def register_skymap_command(
    repo: str, name: str, config_name: str | None, tracts: tuple[int, ...], as_json: bool
) -> None:
    """Register a rings sky map: all tracts and patches, and the skyMap dataset."""
    from rc2_platform.ingest import register_skymap

    with _open(repo) as butler:
        _report(register_skymap(butler, name, config_name, tracts=list(tracts) or None), as_json)


def _load_manifest(path: Path) -> list[CalibrationEntry]:
    """Calibration entries from a list, or from the ``calibrations`` of a bootstrap.yaml."""
    from pydantic import TypeAdapter, ValidationError

    from rc2_platform.core.yaml_safe import read_yaml
    from rc2_platform.ingest import CalibrationEntry, load_bootstrap_config

    data: Any = read_yaml(path)
    if isinstance(data, dict) and "skymap" in data:
        return list(load_bootstrap_config(path).calibrations)
    if isinstance(data, dict):
        data = data.get("calibrations")
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a list of calibrations (or a 'calibrations' key)")
    for item in data:
        if isinstance(item, dict) and "file" in item and not Path(item["file"]).is_absolute():
            item["file"] = str(path.parent / item["file"])
    try:
        return TypeAdapter(list[CalibrationEntry]).validate_python(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"{path}: invalid calibration entry {loc}: {err['msg']}") from None


@click.command("ingest-calibs")
@repo_argument
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--collection", default="HSC/calib", show_default=True, help="CALIBRATION collection."
)
@click.option("--run", default=None, help="Prefix of the per-epoch RUNs (default: --collection).")
@click.option("--transfer", type=_TRANSFERS, default="copy", show_default=True, help=_TRANSFER_HELP)
@format_option
@handles_errors
def ingest_calibs_command(
    repo: str, manifest: str, collection: str, run: str | None, transfer: str, as_json: bool
) -> None:
    """Ingest master calibrations from MANIFEST and certify them with their validity."""
    from rc2_platform.ingest import ingest_calibrations

    entries = _load_manifest(Path(manifest))
    with _open(repo) as butler:
        result = ingest_calibrations(
            butler, entries, run=run, collection=collection, transfer=transfer
        )
    _report(result, as_json)
    _exit_for(result)


@click.command("ingest-refcats")
@repo_argument
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--run", default="refcats", show_default=True, help="RUN collection.")
@click.option("--all", "all_shards", is_flag=True, help="Also shards not overlapping raws.")
@format_option
@handles_errors
def ingest_refcats_command(
    repo: str, config: str, run: str, all_shards: bool, as_json: bool
) -> None:
    """Ingest the reference-catalog shards named in CONFIG (a bootstrap.yaml)."""
    from rc2_platform.ingest import ingest_refcats, load_bootstrap_config

    cfg = load_bootstrap_config(config)
    if cfg.refcat is None:
        raise ConfigError(f"{config} names no refcat")
    with _open(repo) as butler:
        result = ingest_refcats(
            butler, cfg.refcat.shards, name=cfg.refcat.name, run=run,
            only_overlapping=not all_shards, transfer=cfg.refcat.transfer,
        )  # fmt: skip
    _report(result, as_json)
    _exit_for(result)


@click.command("ingest-masks")
@repo_argument
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--run", default="masks", show_default=True, help="RUN collection.")
@click.option("--all", "all_masks", is_flag=True, help="Also patches not overlapping raws.")
@format_option
@handles_errors
def ingest_masks_command(repo: str, config: str, run: str, all_masks: bool, as_json: bool) -> None:
    """Ingest the bright-object masks named in CONFIG (a bootstrap.yaml)."""
    from rc2_platform.ingest import ingest_bright_object_masks, load_bootstrap_config

    cfg = load_bootstrap_config(config)
    with _open(repo) as butler:
        result = ingest_bright_object_masks(
            butler, cfg.masks, skymap=cfg.skymap.name, run=run, only_overlapping=not all_masks
        )
    _report(result, as_json)
    _exit_for(result)
