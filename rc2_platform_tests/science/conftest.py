"""Fixtures: the ``tiny`` survey simulated once per session, and single-frame outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rc2_platform_tests.science.tiny_files import TinyFiles, coadd_chain, single_frame

#: The two i-band visits and the six detectors processed by the chain fixtures.
VISITS = (1012, 1014)
DETECTORS = (7, 8, 9, 30, 31, 32)
TRACT, PATCH = 9813, 40


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyFiles:
    """The ``tiny`` preset written once (seed 1)."""
    from rc2_platform.simulate import simulate

    root = Path(tmp_path_factory.mktemp("tiny_science")) / "tiny"
    simulate("tiny", root, seed=1)
    return TinyFiles(root)


@pytest.fixture(scope="session")
def frames(tiny: TinyFiles) -> dict[tuple[int, int], dict[str, Any]]:
    """isr/characterizeImage/calibrate outputs of two i-band visits, all detectors."""
    return {(v, d): single_frame(tiny, v, d) for v in VISITS for d in DETECTORS}


@pytest.fixture(scope="session")
def patch_chain(tiny: TinyFiles, frames: dict[tuple[int, int], dict[str, Any]]) -> dict[str, Any]:
    """makeWarp ... forcedPhotCoadd on one patch from the two visits."""
    from rc2_platform.skymap import load_skymap

    calexps = {v: [frames[(v, d)]["calexp"] for d in DETECTORS] for v in VISITS}
    return coadd_chain(
        tiny, calexps, {v: "i" for v in VISITS}, TRACT, PATCH, load_skymap("hsc_rings_v1_tiny")
    )
