"""A damaged journal line (bytes that are not UTF-8, not JSON, not an object) is skipped.

A torn write or a disk error can leave such a line in ``_runs/<run>/journal.jsonl``;
the next event starts a line of its own (not glued to the torn one), and every reader (``rc2 runs``, ``report``, ``provenance``, ``aggregate``) goes on with the
other events. Before, bytes that were not UTF-8 made all four exit 4 with an
"unexpected UnicodeDecodeError".
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from rc2_platform.butler import Butler
from rc2_platform.cli import main
from rc2_platform.execution.journal import Journal


def test_damaged_lines_are_skipped_by_readers_and_the_cli(tmp_path: Path) -> None:
    Butler.create(tmp_path / "repo").close()
    journal = Journal.for_run(tmp_path / "repo", "HSC/runs/x")
    journal.append("run_started", run="HSC/runs/x", n_quanta=3, tasks={"isr": 3})
    with journal.path.open("ab") as fh:
        fh.write(b'\xff\xfe{"event": "broken"}\n[1, 2]\n"text"\n{"event": tor')  # torn
    journal.append("run_finished", status="succeeded")
    assert [e["event"] for e in journal.events()] == ["run_started", "run_finished"]
    result = CliRunner().invoke(main, ["runs", str(tmp_path / "repo"), "--json"])
    assert result.exit_code == 0, result.output
    assert "HSC/runs/x" in result.stdout
