"""A truncated input file fails its quantum at once; other read errors are retried.

The stand-in graph of :mod:`.helpers` over raws stored as FITS exposures: detector 1's raw
is cut short (``TruncatedFileError``, in ``retry.not_retried`` by default), detector 2's
is overwritten with bytes that are not FITS (a plain ``FormatterError``, worth a retry).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from rc2_platform.butler import Butler
from rc2_platform.cli import main
from rc2_platform.core.dataset_types import DatasetRef, DatasetType
from rc2_platform.core.exposure import Exposure
from rc2_platform.execution.execution_config import RetryPolicy
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.report import build_report
from rc2_platform.execution.runner import RunOptions, run_graph
from rc2_platform_tests.execution.helpers import (
    DETECTORS,
    ID,
    INPUT_RUN,
    RUN,
    make_config,
    make_graph,
)

RAW_IMAGE = DatasetType("raw_image", ID, "Exposure")


def _image_repo(root: Path) -> dict[int, DatasetRef]:
    """A repository with one 64 x 64 FITS raw per detector."""
    with Butler.create(root) as butler:
        butler.registry.insert_dimension_records("instrument", [{"instrument": "HSC"}])
        butler.registry.insert_dimension_records(
            "detector", [{"instrument": "HSC", "detector": d} for d in DETECTORS]
        )
        butler.registry.register_run(INPUT_RUN)
        butler.registry.register_dataset_type(RAW_IMAGE)
        image = np.ones((64, 64), dtype=np.float32)
        return {
            d: butler.put(
                Exposure(image), RAW_IMAGE, {"instrument": "HSC", "detector": d}, run=INPUT_RUN
            )  # fmt: skip
            for d in DETECTORS
        }


def test_a_truncated_input_fails_at_once_and_a_plain_read_error_is_retried(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    raws = _image_repo(repo)
    datastore = Butler.open_datastore(repo)
    cut = datastore.path_for(raws[1])
    cut.write_bytes(cut.read_bytes()[:4000])
    garbage = datastore.path_for(raws[2])
    garbage.write_bytes(b"this is not a FITS file" * 200)
    make_graph(tmp_path / "g.qgraph", raws)

    config = make_config(retries=1)
    assert config.retry.not_retried == RetryPolicy().not_retried  # the shipped default
    summary = run_graph(tmp_path / "g.qgraph", repo, config=config, options=RunOptions(jobs=2))

    assert summary.status == "failed"
    assert summary.counts["failed"] == 2
    retried = [e["cluster"] for e in Journal.for_run(repo, RUN).events("retry_scheduled")]
    assert retried == ["step1_HSC_2"]  # the garbage file once; the truncated one never
    report = build_report(repo, RUN)
    errors = {g["exception_type"]: g for g in report.errors}
    assert set(errors) == {"TruncatedFileError", "FormatterError"}
    assert "the file is truncated: 4000 bytes" in str(errors["TruncatedFileError"])
    assert str(cut) in str(errors["TruncatedFileError"])

    table = CliRunner().invoke(main, ["report", str(repo), RUN])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    at = next(i for i, ln in enumerate(lines) if "TruncatedFileError" in ln)
    assert "1 failed [a]" in lines[at] and "the file is truncated: 4000 bytes" in lines[at]
    assert "'detector': 1" in lines[at + 1] and "(cluster step1_HSC_1, attempt 1)" in lines[at + 1]
