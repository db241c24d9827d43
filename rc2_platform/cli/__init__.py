"""The ``rc2`` command line: one entry point, commands loaded only when used.

:data:`COMMANDS` names every top-level command as ``"module:attribute"``; the module
is imported only when that command runs or ``rc2 --help`` lists it, and command
modules import nothing heavy at module level (see ``docs/cli.md``). Errors derived
from :class:`rc2_platform.errors.Rc2Error` are printed as one line on stderr; the exit
codes are the constants of :mod:`rc2_platform.cli.common`.
"""

from __future__ import annotations

import logging

import click

from rc2_platform import __version__
from rc2_platform.cli._group import LazyGroup

#: Every top-level command: name -> "module:attribute", in help order within a section.
#: Add a command here (and nowhere else); docs/cli.md says how.
COMMANDS: dict[str, str] = {
    # repository and queries
    "create": "rc2_platform.cli.butler_commands:create",
    "register-dataset-type": "rc2_platform.cli.butler_commands:register_dataset_type",
    "dataset-types": "rc2_platform.cli.butler_commands:dataset_types",
    "query-datasets": "rc2_platform.cli.butler_commands:query_datasets",
    "query-data-ids": "rc2_platform.cli.butler_commands:query_data_ids",
    "query-dimension-records": "rc2_platform.cli.butler_commands:query_dimension_records",
    "collections": "rc2_platform.cli.collection_commands:collections_group",
    # moving data between repositories and versions
    "migrate": "rc2_platform.cli.data_commands:migrate",
    "export": "rc2_platform.cli.data_commands:export_command",
    "import": "rc2_platform.cli.data_commands:import_command",
    "transfer-datasets": "rc2_platform.cli.data_commands:transfer_datasets_command",
    # data management
    "remove-runs": "rc2_platform.cli.admin_commands:remove_runs",
    "prune-datasets": "rc2_platform.cli.admin_commands:prune_datasets",
    "remove-dataset-type": "rc2_platform.cli.admin_commands:remove_dataset_type",
    "certify-calibrations": "rc2_platform.cli.admin_commands:certify_calibrations",
    "decertify": "rc2_platform.cli.admin_commands:decertify",
    "retrieve-artifacts": "rc2_platform.cli.admin_commands:retrieve_artifacts",
    "fsck": "rc2_platform.cli.admin_commands:fsck",
    # survey data and ingest
    "simulate": "rc2_platform.cli.simulate_commands:simulate_command",
    "bootstrap": "rc2_platform.cli.ingest_commands:bootstrap_command",
    "ingest-raws": "rc2_platform.cli.ingest_commands:ingest_raws_command",
    "define-visits": "rc2_platform.cli.ingest_commands:define_visits_command",
    "register-instrument": "rc2_platform.cli.ingest_commands:register_instrument_command",
    "register-skymap": "rc2_platform.cli.ingest_commands:register_skymap_command",
    "ingest-calibs": "rc2_platform.cli.ingest_commands:ingest_calibs_command",
    "ingest-refcats": "rc2_platform.cli.ingest_commands:ingest_refcats_command",
    "ingest-masks": "rc2_platform.cli.ingest_commands:ingest_masks_command",
    # pipelines and graphs
    "pipeline": "rc2_platform.cli.pipeline_commands:pipeline",
    "qgraph": "rc2_platform.cli.graph_commands:qgraph",
    # execution
    "run": "rc2_platform.cli.execution_commands:run",
    "submit": "rc2_platform.cli.execution_commands:submit",
    "aggregate": "rc2_platform.cli.execution_commands:aggregate",
    "provenance": "rc2_platform.cli.execution_commands:provenance",
    "register-results": "rc2_platform.cli.execution_commands:register_results",
    "report": "rc2_platform.cli.execution_commands:report",
    "cancel": "rc2_platform.cli.execution_commands:cancel",
    "restart": "rc2_platform.cli.execution_commands:restart",
    "runs": "rc2_platform.cli.runs_commands:runs",
    "run-cluster": "rc2_platform.cli.execution_commands:run_cluster",
    "dagman-post": "rc2_platform.cli.execution_commands:dagman_post",
    # validation and the demo
    "validate": "rc2_platform.cli.validate_commands:validate",
    "demo": "rc2_platform.cli.demo_commands:demo",
    # the butler server
    "serve": "rc2_platform.cli.server_commands:serve",
    "tokens": "rc2_platform.cli.server_commands:tokens",
}

#: Headings of ``rc2 --help``: the command module -> its section title.
SECTIONS: dict[str, str] = {
    "rc2_platform.cli.butler_commands": "Repository and queries",
    "rc2_platform.cli.collection_commands": "Repository and queries",
    "rc2_platform.cli.data_commands": "Moving data",
    "rc2_platform.cli.admin_commands": "Data management",
    "rc2_platform.cli.simulate_commands": "Survey data and ingest",
    "rc2_platform.cli.ingest_commands": "Survey data and ingest",
    "rc2_platform.cli.pipeline_commands": "Pipelines and QuantumGraphs",
    "rc2_platform.cli.graph_commands": "Pipelines and QuantumGraphs",
    "rc2_platform.cli.execution_commands": "Execution",
    "rc2_platform.cli.runs_commands": "Execution",
    "rc2_platform.cli.validate_commands": "Validation and the demo",
    "rc2_platform.cli.demo_commands": "Validation and the demo",
    "rc2_platform.cli.server_commands": "The butler server",
}


@click.group(
    cls=LazyGroup,
    commands_table=COMMANDS,
    sections=SECTIONS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Exit codes: 0 success, 1 bad input or refused, 2 usage error, "
    "3 partial failure, 4 failure, 130 interrupted (Ctrl-C). `rc2 COMMAND --help` for a "
    "command; docs/cli.md.",
)
@click.version_option(__version__, prog_name="rc2")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="WARNING",
    show_default=True,
    help="Logging threshold for messages on stderr (DEBUG also logs tracebacks).",
)
def main(log_level: str) -> None:
    """rc2: data butler, ingest, QuantumGraph and execution for the RC2 survey.

    Commands that work on a repository take its folder REPO as the first argument.
    """
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
