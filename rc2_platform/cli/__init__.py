"""The ``rc2`` command line: one entry point, one module of commands per capability.

Each ``*_commands`` module defines click commands and is registered here. Errors
derived from :class:`rc2_platform.errors.Rc2Error` are printed as one line on stderr
with exit status 1; click's own usage errors exit with status 2.
"""

from __future__ import annotations

import importlib
import logging

import click

from rc2_platform import __version__

#: Modules whose ``register(group)`` function adds their commands, in help order.
COMMAND_MODULES = (
    "rc2_platform.cli.butler_commands",
    "rc2_platform.cli.simulate_commands",
    "rc2_platform.cli.ingest_commands",
    "rc2_platform.cli.pipeline_commands",
    "rc2_platform.cli.graph_commands",
    "rc2_platform.cli.execution_commands",
    "rc2_platform.cli.validate_commands",
    "rc2_platform.cli.demo_commands",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rc2")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="WARNING",
    show_default=True,
    help="Logging threshold for messages on stderr.",
)
def main(log_level: str) -> None:
    """rc2: data butler, ingest, QuantumGraph and execution for the RC2 survey."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")


for _module_name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(_module_name)
    except ModuleNotFoundError as _exc:
        if _exc.name != _module_name:
            raise
        continue
    _module.register(main)
