"""Moving data: schema migrations, export/import and transfers between repositories.

``rc2 migrate REPO`` upgrades an older registry (Alembic revisions shipped in the
package). See ``docs/data-management.md``. Heavy imports stay inside the functions.
"""

from __future__ import annotations

import click

from rc2_platform.cli.common import emit_json, json_option, print_note, repo_argument


@click.command("migrate")
@repo_argument
@click.option("--dry-run", is_flag=True, help="Only say which revisions would be applied.")
@json_option
def migrate(repo: str, dry_run: bool, as_json: bool) -> None:
    """Upgrade the registry of REPO to this software's schema version.

    Applies the Alembic revisions between the repository's schema version and this
    release's, and rewrites a version-1 dimension universe as version 2, in one
    transaction (MariaDB commits schema changes one by one: back it up first).
    """
    from rc2_platform.butler import Butler

    report = Butler.migrate(repo, dry_run=dry_run)
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
