"""Fixtures: one ``tiny`` survey per test session (a few seconds to write)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rc2_platform.simulate import SimulationResult, simulate


@pytest.fixture(scope="session")
def tiny_survey(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    """The ``tiny`` preset written with seed 1."""
    out: Path = tmp_path_factory.mktemp("tiny") / "survey"
    return simulate("tiny", out, seed=1)
