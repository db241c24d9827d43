"""Shared fixtures: one parametrized registry database per backend."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rc2_platform_tests.databases import BACKENDS, scratch_database

# The example tasks of the tests are outside the default allow-list of task modules
# (rc2_platform/pipeline/task_modules.py); subprocesses (rc2, workers) inherit this.
os.environ.setdefault("RC2_TASK_MODULES", "rc2_platform_tests")

if TYPE_CHECKING:
    from rc2_platform.simulate import SimulationResult


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty registry database on SQLite, PostgreSQL or MariaDB."""
    with scratch_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(params=("sqlite", "postgresql"))
def db_url_sqlite_pg(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty registry database on SQLite or PostgreSQL (heavier ingest tests)."""
    with scratch_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="session")
def tiny_survey(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    """The ``tiny`` preset written once per test session (per xdist worker), seed 1."""
    from rc2_platform.simulate import simulate

    return simulate("tiny", tmp_path_factory.mktemp("tiny") / "survey", seed=1)
