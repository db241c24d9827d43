"""Data-management commands: remove RUNs, prune datasets, remove dataset types, certify,
decertify, retrieve artifacts, and check the datastore against the registry (fsck).

Each is a thin wrapper of :mod:`rc2_platform.admin`. Whatever removes or moves data
takes ``--dry-run``; a refusal (something still uses what would go, a file would be
overwritten) is one line naming the users and exits 1 with nothing changed.
"""

from __future__ import annotations

from typing import Any

import click

from rc2_platform.cli.butler_commands import (
    open_butler,
    parse_bind,
    split_collections,
    where_options,
)
from rc2_platform.cli.common import (
    EXIT_PARTIAL,
    emit_json,
    emit_rows,
    format_option,
    json_option,
    named_collections,
    print_note,
    repo_argument,
)

_DRY_RUN = click.option(
    "--dry-run", is_flag=True, help="Check and show what would be done; change nothing."
)


def _collections(help: str) -> Any:
    return click.option(
        "--collections", "-c", multiple=True, required=True, metavar="NAMES", help=help
    )


def _datasets_option(func: Any) -> Any:
    return click.option(
        "--datasets",
        "-d",
        "dataset_types",
        multiple=True,
        metavar="TYPES",
        help="Only these dataset types (comma-separated or repeated); default: every type.",
    )(func)


def _verb(dry_run: bool, done: str, would: str) -> str:
    return would if dry_run else done


# --- removals -------------------------------------------------------------------------


@click.command("remove-runs")
@repo_argument
@click.argument("patterns", nargs=-1, required=True, metavar="PATTERN...")
@click.option(
    "--unlink-from-chains",
    is_flag=True,
    help="Drop the RUNs from the chains that list them (otherwise refused).",
)
@click.option(
    "--unlink",
    is_flag=True,
    help="Also drop their datasets from TAGGED and CALIBRATION collections (otherwise refused).",
)
@_DRY_RUN
@format_option
def remove_runs(
    repo: str,
    patterns: tuple[str, ...],
    unlink_from_chains: bool,
    unlink: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Remove RUN collections (names or globs) with their datasets, files, journal and provenance.

    Every RUN is checked first; if a chain lists one (see --unlink-from-chains), or a
    TAGGED or CALIBRATION collection uses its datasets (see --unlink), nothing is
    removed and the users are listed (exit 1).
    """
    from rc2_platform.admin import remove_runs as run_removal

    with open_butler(repo) as butler:
        result = run_removal(
            butler,
            list(patterns),
            unlink_from_chains=unlink_from_chains,
            unlink=unlink,
            dry_run=dry_run,
        )
    rows = [r | {"dry_run": dry_run} for r in result.rows]
    rows += [
        {
            "run": run,
            "datasets": 0,
            "dataset_types": {},
            "unlinked_from_chains": [],
            "unlinked_from": [],
            "dry_run": dry_run,
            "finished_interrupted_removal": True,
        }
        for run in result.finished
    ]
    if not as_json:
        rows = [
            r
            | {
                "dataset_types": ", ".join(f"{k}: {v}" for k, v in r["dataset_types"].items()),
                "unlinked": ", ".join(r["unlinked_from_chains"] + r["unlinked_from"])
                or (
                    "(removal killed after its commit: finished)"
                    if r.get("finished_interrupted_removal")
                    else ""
                ),
            }
            for r in rows
        ]
    title = _verb(dry_run, "removed", "would remove (dry run)")
    emit_rows(rows, ["run", "datasets", "dataset_types", "unlinked"], as_json=as_json, title=title)


@click.command("prune-datasets")
@repo_argument
@_collections(
    "Collections whose datasets go (every match; comma-separated or repeated). Name them "
    "explicitly: an empty value (-c '') is refused, there is no all-collections form."
)
@_datasets_option
@where_options
@click.option(
    "--unlink",
    is_flag=True,
    help="Also drop them from TAGGED/CALIBRATION collections not searched (otherwise refused).",
)
@click.option("--keep-files", is_flag=True, help="Remove the registry rows only; keep the files.")
@_DRY_RUN
@format_option
def prune_datasets(
    repo: str,
    collections: tuple[str, ...],
    dataset_types: tuple[str, ...],
    where: str,
    bind: tuple[str, ...],
    unlink: bool,
    keep_files: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Remove the datasets found in --collections (and their files), in one transaction.

    Datasets that TAGGED or CALIBRATION collections outside --collections still use are
    refused (exit 1, the collections listed) unless --unlink. The counts are what this
    command's transaction deleted: datasets a concurrent removal deleted first are
    counted as already_removed (exit 0). --where may name only
    dimensions the types have (required or implied) and their records' columns; another
    one (e.g. visit for a bias) is refused: with -d, for any type named; without, for
    any type it would prune.
    """
    from rc2_platform.admin import prune_datasets as prune

    names = named_collections(collections, "prune-datasets", "nothing was removed")
    with open_butler(repo) as butler:
        result = prune(
            butler,
            names,
            dataset_types=split_collections(dataset_types) or None,
            where=where,
            bind=parse_bind(bind),
            unlink=unlink,
            unstore=not keep_files,
            dry_run=dry_run,
        )
    title = _verb(dry_run, "pruned", "would prune (dry run)")
    gone = len(result.already_removed)
    columns = ["dataset_type", "run", "datasets", *(["already_removed"] if gone else [])]
    emit_rows(result.counts(), columns, as_json=as_json, title=title)
    if result.unlinked_from and not as_json:
        print_note(f"also removed from: {', '.join(result.unlinked_from)}")
    if gone and not as_json:
        print_note(
            f"{gone} dataset(s) found were already removed by another removal (e.g. a "
            "concurrent prune-datasets) before this one; nothing left to do for them"
        )


@click.command("remove-dataset-type")
@repo_argument
@click.argument("name")
@click.option(
    "--with-datasets",
    is_flag=True,
    help="Also remove every dataset of the type and its files (otherwise refused).",
)
@_DRY_RUN
@json_option
def remove_dataset_type(
    repo: str, name: str, with_datasets: bool, dry_run: bool, as_json: bool
) -> None:
    """Remove dataset type NAME; refused while it has datasets (listed per RUN).

    With --with-datasets its datasets, their memberships and files go with it.
    """
    from rc2_platform.admin import remove_dataset_type as remove_type

    with open_butler(repo) as butler:
        result = remove_type(butler, name, with_datasets=with_datasets, dry_run=dry_run)
    if as_json:
        emit_json(
            {
                "dataset_type": name,
                "dry_run": dry_run,
                "datasets_by_run": result.datasets_by_run,
                "also_in": result.used_by,
            }
            | ({"finished_interrupted_removal": True} if result.finished else {})
        )
        return
    if result.finished:
        click.echo(
            f"dataset type {name} was removed by a removal killed after its commit; finished it"
        )
        return
    n = sum(result.datasets_by_run.values())
    click.echo(f"{_verb(dry_run, 'removed', 'would remove')} dataset type {name} ({n} dataset(s))")
    for run, count in sorted(result.datasets_by_run.items()):
        click.echo(f"  {run}: {count}")


# --- calibrations ---------------------------------------------------------------------


@click.command("certify-calibrations")
@repo_argument
@click.argument("input_collection", metavar="RUN")
@click.argument("calib_collection", metavar="CALIB_COLLECTION")
@click.argument("dataset_type", metavar="DATASET_TYPE")
@click.option("--begin-date", default=None, help="Start of validity (ISO, TAI); default: forever.")
@click.option("--end-date", default=None, help="End of validity, excluded; default: forever.")
@click.option(
    "--search-all",
    is_flag=True,
    help="RUN is a chain: search all of it (first match per data ID), not only its first child.",
)
@format_option
def certify_calibrations(
    repo: str,
    input_collection: str,
    calib_collection: str,
    dataset_type: str,
    begin_date: str | None,
    end_date: str | None,
    search_all: bool,
    as_json: bool,
) -> None:
    """Certify the DATASET_TYPE datasets of RUN into CALIB_COLLECTION over one validity range.

    CALIB_COLLECTION is created if missing. All or nothing: a range overlapping an
    existing one for the same data ID is refused (decertify it first).
    """
    from rc2_platform.admin import certify_calibrations as certify

    with open_butler(repo) as butler:
        result = certify(
            butler,
            input_collection,
            calib_collection,
            dataset_type,
            begin=begin_date,
            end=end_date,
            search_all=search_all,
        )
    title = f"certified into {calib_collection} valid {result.timespan}"
    columns = list(dict.fromkeys(k for r in result.rows for k in r))
    emit_rows(result.rows, columns, as_json=as_json, title=title)


@click.command("decertify")
@repo_argument
@click.argument("calib_collection", metavar="CALIB_COLLECTION")
@click.argument("dataset_type", metavar="DATASET_TYPE")
@click.option("--begin-date", default=None, help="Start of the range to remove (ISO, TAI).")
@click.option("--end-date", default=None, help="End of the range to remove, excluded.")
@where_options
@_DRY_RUN
@format_option
def decertify(
    repo: str,
    calib_collection: str,
    dataset_type: str,
    begin_date: str | None,
    end_date: str | None,
    where: str,
    bind: tuple[str, ...],
    dry_run: bool,
    as_json: bool,
) -> None:
    """Remove DATASET_TYPE validity inside [--begin-date, --end-date) from CALIB_COLLECTION.

    Without dates the whole validity goes. Ranges sticking out are trimmed and a range
    containing the cut is split in two (LSST semantics); the datasets stay in their RUN.
    --where may name only DATASET_TYPE's dimensions (required or implied) and their
    records' columns; another dimension (e.g. visit for a bias) is refused.
    """
    from rc2_platform.admin import decertify as run_decertify

    with open_butler(repo) as butler:
        result = run_decertify(
            butler,
            calib_collection,
            dataset_type,
            begin=begin_date,
            end=end_date,
            where=where,
            bind=parse_bind(bind),
            dry_run=dry_run,
        )
    rows = result.rows()
    columns = list(dict.fromkeys(k for r in rows for k in r)) or ["id", "before", "after"]
    title = _verb(dry_run, "decertified", "would decertify (dry run)") + f" {result.timespan}"
    emit_rows(rows, columns, as_json=as_json, title=title)


# --- artifacts ------------------------------------------------------------------------


@click.command("retrieve-artifacts")
@repo_argument
@click.argument("destination", metavar="DEST")
@_collections("Collections to search (comma-separated or repeated; an empty -c '' is refused).")
@_datasets_option
@where_options
@click.option("--find-first", is_flag=True, help="Only the first dataset per data ID.")
@click.option(
    "--transfer",
    type=click.Choice(["copy", "link", "symlink"]),
    default="copy",
    show_default=True,
    help="How files reach DEST (link: hard link).",
)
@click.option(
    "--zip", "as_zip", is_flag=True, help="Write DEST as one zip file with rc2_index.json inside."
)
@_DRY_RUN
@format_option
def retrieve_artifacts(
    repo: str,
    destination: str,
    collections: tuple[str, ...],
    dataset_types: tuple[str, ...],
    where: str,
    bind: tuple[str, ...],
    find_first: bool,
    transfer: str,
    as_zip: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Copy the files of the datasets found into folder DEST (paths as in the datastore).

    Existing files are never overwritten: if any target exists nothing is written
    (exit 1). With --zip, DEST is a new zip file holding the files and an index.
    --where may name only dimensions the types have (required or implied) and their
    records' columns; another one (e.g. visit for a bias) is refused, nothing written.
    """
    from rc2_platform.admin import retrieve_artifacts as retrieve

    names = named_collections(collections, "retrieve-artifacts", "nothing was written")
    with open_butler(repo) as butler:
        result = retrieve(
            butler,
            destination,
            names,
            dataset_types=split_collections(dataset_types) or None,
            where=where,
            bind=parse_bind(bind),
            find_first=find_first,
            transfer=transfer,
            zip=as_zip,
            dry_run=dry_run,
        )
    verb = _verb(dry_run, "retrieved", "would retrieve (dry run)")
    emit_rows(
        result.rows,
        ["dataset_type", "run", "path", "file_size"],
        as_json=as_json,
        title=f"{verb} into {result.destination}",
    )


# --- fsck -----------------------------------------------------------------------------


@click.command("fsck")
@repo_argument
@click.option(
    "--remove",
    is_flag=True,
    help="Repair: finish pending removals, delete orphan files older than --min-age and "
    "temporaries of dead writers. Refused (exit 1) while a live orchestrator holds a "
    "RUN's lock. Default: report only (dry run).",
)
@click.option(
    "--min-age",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    metavar="SECONDS",
    help="An orphan changed more recently is kept (a write in progress places its file "
    "before its commit).",
)
@json_option
def fsck(repo: str, remove: bool, min_age: float, as_json: bool) -> None:
    """Compare the files under REPO with the registry's records; with --remove, repair.

    Reports pending removals (killed after their commit), files no dataset names
    (orphans, temporaries), _runs/<run> folders of RUNs not registered, outputs
    awaiting `rc2 aggregate` (never removed), datasets whose file is missing or not of
    its recorded size, and RUNs a live orchestrator executes. Exit 0 when nothing is left to repair or report, 3
    otherwise. --remove is refused (exit 1, one line naming the RUN and its holder) while
    a live orchestrator (`rc2 run`) holds a RUN's lock; a crashed one does not stop it.
    Stop other writers (ingest, import) before --remove.
    """
    from rc2_platform.admin.fsck import check_repository, refuse_while_running

    # Before the writable open below, which already finishes pending removals (a server
    # URL is refused by that open: the server is read-only).
    if remove and not repo.lower().startswith(("http://", "https://")):
        with open_butler(repo, read_only=True) as butler:
            refuse_while_running(butler)
    with open_butler(repo, read_only=not remove) as butler:
        report = check_repository(butler, remove=remove, min_age=min_age)
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_fsck(report)
    if not report.clean:
        raise SystemExit(EXIT_PARTIAL)


def _print_fsck(report: Any) -> None:
    """The text form of an FsckReport."""
    for pending in report.pending_removals:
        click.echo(pending.line())
    click.echo(f"{report.files} file(s) named by datastore records")
    for kind in ("orphan", "temporary"):
        found = [o for o in report.orphans if o["kind"] == kind]
        if found:
            click.echo(f"{len(found)} {kind} file(s) no dataset names:")
        for o in found[:1000]:
            click.echo(f"  {o['path']} ({o['bytes']} bytes): {o['action']}")
        if len(found) > 1000:
            click.echo(f"  ... and {len(found) - 1000} more (--json lists all)")
    for run, n in report.unregistered.items():
        click.echo(f"{n} file(s) of RUN {run} await registration (`rc2 aggregate`); kept")
    for folder in report.run_folders:
        click.echo(f"{folder['path']}: folder of a RUN that is not registered: {folder['action']}")
    for live in report.live_runs:
        click.echo(
            f"RUN {live['run']} is being executed by {live['holder']}: --remove is refused "
            "until it ends"
        )
    if report.missing:
        click.echo(f"{len(report.missing)} dataset file(s) missing (recorded, not on disk):")
        for path in report.missing[:1000]:
            click.echo(f"  {path}")
    if report.wrong_size:
        click.echo(
            f"{len(report.wrong_size)} dataset file(s) whose size differs from the record "
            "(damaged or replaced; restore them, or remove the datasets with "
            "`rc2 prune-datasets` and re-run what made them):"
        )
        for w in report.wrong_size[:1000]:
            click.echo(f"  {w['path']}: {w['actual']} bytes, recorded {w['recorded']}")
    removed = sum(o["action"] == "removed" for o in report.orphans + report.run_folders)
    if report.clean:
        click.echo(f"removed {removed} file(s); clean" if removed else "clean")
    elif report.dry_run and (
        any(o["action"] == "would remove" for o in report.orphans + report.run_folders)
        or any(p.dry_run for p in report.pending_removals)
    ):
        click.echo("dry run: nothing changed; --remove repairs what is marked 'would remove'")
    elif report.missing or report.wrong_size:
        click.echo("not clean: missing or damaged files are never repaired by rc2 fsck")
