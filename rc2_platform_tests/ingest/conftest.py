"""Fixtures: one simulated ``tiny`` survey per test session (seconds to make)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rc2_platform.simulate import SimulationResult, simulate


@pytest.fixture(scope="session")
def tiny_survey(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    """The ``tiny`` preset written once; tests must not modify its files."""
    return simulate("tiny", Path(tmp_path_factory.mktemp("tiny")) / "survey")
