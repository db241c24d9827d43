"""Moving data: schema migrations, export/import and transfers between repositories.

``rc2 migrate REPO`` upgrades an older registry (Alembic revisions shipped in the
package); ``rc2 export`` / ``rc2 import`` write and read the versioned YAML export
format; ``rc2 transfer-datasets`` copies between two repositories. See
``docs/data-management.md``. Heavy imports stay inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from rc2_platform.cli.common import (
    emit_json,
    json_option,
    named_collections,
    print_note,
    repo_argument,
)

if TYPE_CHECKING:
    from rc2_platform.butler_transfer import TransferReport

F = TypeVar("F", bound=Callable[..., Any])


@click.command("migrate")
@repo_argument
@click.option("--dry-run", is_flag=True, help="Only say which revisions would be applied.")
@click.option(
    "--takeover",
    is_flag=True,
    help="Take the migration lock from a migration recorded on another host that is gone, "
    "and pass over RUNs held by a workflow (DAGMan, Dagster) or another host's orchestrator "
    "that is gone (crashed holders of this host are passed over without it).",
)
@json_option
def migrate(repo: str, dry_run: bool, takeover: bool, as_json: bool) -> None:
    """Upgrade the registry of REPO to this software's schema version.

    Applies the Alembic revisions between the repository's schema version and this
    release's, and rewrites a version-1 dimension universe as version 2, in one
    transaction (MariaDB commits schema changes one by one: back it up first).
    Holds REPO's migration lock (REPO/_migrate/lock): refused while another migration
    runs or while an orchestrator or workflow holds one of REPO's RUNs.
    """
    from rc2_platform.execution.migration_lock import migrate_repository

    report = migrate_repository(repo, dry_run=dry_run, takeover=takeover)
    if as_json:
        emit_json(report.to_dict())
        return
    if report.up_to_date:
        print_note(f"{repo}: schema {report.schema_to} is current; nothing to do")
        return
    verb = "would migrate" if dry_run else "migrated"
    universe = (
        f", universe {report.universe_from} -> {report.universe_to}"
        if report.universe_from != report.universe_to
        else ""
    )
    click.echo(f"{verb} {repo}: schema {report.schema_from} -> {report.schema_to}{universe}")
    if report.revision_from is None:
        click.echo(f"  stamp alembic_version at {report.schema_from} (registry older than Alembic)")
    for step in report.steps:
        click.echo(f"  {step.revision}: {step.description}")


_TRANSFER_CHOICE = click.Choice(["copy", "link", "symlink", "hardlink"])


def _split(values: tuple[str, ...]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _print_report(report: TransferReport, what: str, as_json: bool) -> None:
    if as_json:
        emit_json(report.to_dict())
        return
    c = report.counts
    verb = f"would {report.operation}" if report.dry_run else f"{report.operation}ed"
    verb = verb.replace("transfered", "transferred")
    new = "" if report.new_datasets is None else f" ({report.new_datasets} new)"
    click.echo(
        f"{verb} {what}: {c['datasets']} datasets{new}, {c['files']} files, "
        f"{c['dimension_records']} dimension records, {c['dataset_types']} dataset types, "
        f"{c['collections']} collections ({c['tagged']} tagged, "
        f"{c['calibration_ranges']} validity ranges)"
    )
    if report.kept_records:
        n = len(report.kept_records)
        verb = "would keep" if report.dry_run else "kept"
        print_note(
            f"{verb} {n} existing dimension record{'s' if n > 1 else ''} with the "
            "repository's values (--skip-differing-records), repository value first: "
            + "; ".join(report.kept_records[:3])
            + (f"; and {n - 3} more" if n > 3 else "")
        )
    if not report.dry_run:
        print_note(
            f"registry {report.registry_seconds:.2f} s, files {report.file_seconds:.2f} s, "
            f"YAML {report.format_seconds:.2f} s"
        )


def _allow_outside_option(what: str) -> Callable[[F], F]:
    return click.option(
        "--allow-outside-files",
        "allow_outside_files",
        is_flag=True,
        help=f"Also read files {what}. Only for data you trust.",
    )


def _collections_option(func: F) -> F:
    return click.option(
        "--collections",
        "-c",
        "collections",
        multiple=True,
        required=True,
        metavar="NAMES",
        help="Collections to move (comma-separated or repeated); chains bring their children. "
        "An empty -c '' is refused.",
    )(func)


def _skip_differing_option(func: F) -> F:
    return click.option(
        "--skip-differing-records",
        "skip_differing_records",
        is_flag=True,
        help="Keep the target's dimension records where they differ from the incoming ones "
        "(each is listed on stderr) instead of refusing.",
    )(func)


def _selection_options(func: F) -> F:
    func = click.option(
        "--dataset-types",
        "dataset_types",
        multiple=True,
        metavar="PATTERNS",
        help="Only these dataset types (globs, comma-separated or repeated).",
    )(func)
    return click.option(
        "--where",
        default="",
        help='Constraint on the datasets\' data IDs, e.g. "tract = 9615" with '
        "--dataset-types 'deepCoadd*'. Only dimensions the types have (required or "
        "implied) and their records' columns: another one (visit for a bias) is refused.",
    )(func)


@click.command("export")
@repo_argument
@click.argument("file", type=click.Path(dir_okay=False))
@_collections_option
@_selection_options
@click.option(
    "--with-files",
    "with_files",
    type=click.Path(file_okay=False),
    help="Copy the datasets' files into this folder, best inside FILE's folder (else FILE "
    "names the source root, and `rc2 import` needs --allow-outside-files).",
)
@click.option(
    "--transfer",
    type=_TRANSFER_CHOICE,
    default="copy",
    show_default=True,
    help="How --with-files brings files (link: hard link, else copy).",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be exported.")
@json_option
def export_command(
    repo: str,
    file: str,
    collections: tuple[str, ...],
    where: str,
    dataset_types: tuple[str, ...],
    with_files: str | None,
    transfer: str,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Export datasets of REPO with their records, collections and files to a YAML FILE."""
    from rc2_platform.butler import Butler
    from rc2_platform.butler_transfer import export_datasets

    names = named_collections(collections, "export", "nothing was written")
    with Butler(repo) as butler:
        report = export_datasets(
            butler,
            file,
            names,
            where=where,
            dataset_types=_split(dataset_types),
            with_files=with_files,
            transfer=transfer,
            dry_run=dry_run,
        )
    _print_report(report, f"{repo} to {file}", as_json)
    if report.outside_files and not as_json:
        print_note(
            f"{file} names files outside its folder (no --with-files, a --with-files folder "
            "beside it, or --transfer symlink): `rc2 import` reads them only with "
            "--allow-outside-files"
        )


@click.command("import")
@repo_argument
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option(
    "--transfer",
    type=_TRANSFER_CHOICE,
    default="copy",
    show_default=True,
    help="How files come into REPO's datastore (link: hard link, else copy).",
)
@click.option("--dry-run", is_flag=True, help="Check the file against REPO; write nothing.")
@_skip_differing_option
@_allow_outside_option(
    "outside FILE's folder: absolute paths or files_root (an export made without "
    "--with-files, `direct`-ingested files), '..' or symlinks leading out"
)
@json_option
def import_command(
    repo: str,
    file: str,
    transfer: str,
    dry_run: bool,
    skip_differing_records: bool,
    allow_outside_files: bool,
    as_json: bool,
) -> None:
    """Import an export FILE into REPO (checked first, one transaction, idempotent).

    Refused, with nothing written: a FILE of another dimension universe, schema or
    format version, a dataset type or collection defined otherwise in REPO, a
    dimension record existing in REPO with other values (unless
    --skip-differing-records: REPO's are kept and listed), a record FILE holds twice
    with different values, a missing or truncated file (size other than recorded), a
    file outside FILE's folder (an absolute path, '..' or a symlink leading out; FILE may
    be someone else's) unless --allow-outside-files.
    """
    from rc2_platform.butler import Butler
    from rc2_platform.butler_transfer import import_datasets

    with Butler(repo) as butler:
        report = import_datasets(
            butler,
            file,
            transfer=transfer,
            dry_run=dry_run,
            skip_differing_records=skip_differing_records,
            allow_outside_files=allow_outside_files,
        )
    _print_report(report, f"{file} into {repo}", as_json)


@click.command("transfer-datasets")
@repo_argument
@click.argument("dest", metavar="DEST")
@_collections_option
@_selection_options
@click.option(
    "--transfer",
    type=_TRANSFER_CHOICE,
    default="copy",
    show_default=True,
    help="How files come into DEST's datastore (link: hard link, else copy).",
)
@click.option("--dry-run", is_flag=True, help="Check and count; write nothing.")
@_skip_differing_option
@_allow_outside_option("outside REPO's datastore root (ingested in place with `direct`)")
@json_option
def transfer_datasets_command(
    repo: str,
    dest: str,
    collections: tuple[str, ...],
    where: str,
    dataset_types: tuple[str, ...],
    transfer: str,
    dry_run: bool,
    skip_differing_records: bool,
    allow_outside_files: bool,
    as_json: bool,
) -> None:
    """Copy datasets from REPO to DEST with their files and dimension records (idempotent).

    REPO and DEST may use any registry (SQLite, PostgreSQL, MariaDB). Refused, with
    nothing written: another dimension universe, a dataset type or collection defined
    otherwise in DEST, a dimension record existing in DEST with other values (unless
    --skip-differing-records: DEST's are kept and listed), a file outside REPO's
    datastore root (ingested with `direct`) unless --allow-outside-files.
    """
    from rc2_platform.butler import Butler
    from rc2_platform.butler_transfer import transfer_datasets

    names = named_collections(collections, "transfer-datasets", "nothing was written")
    with Butler(repo) as source, Butler(dest) as target:
        report = transfer_datasets(
            source,
            target,
            names,
            where=where,
            dataset_types=_split(dataset_types),
            transfer=transfer,
            dry_run=dry_run,
            skip_differing_records=skip_differing_records,
            allow_outside_files=allow_outside_files,
        )
    _print_report(report, f"{repo} to {dest}", as_json)
