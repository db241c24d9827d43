"""Registration as its own step: ``rc2 aggregate`` is idempotent, incremental, restartable.

The records are written the way workers write them (``RecordsWriter``) for a RUN of
1,000 datasets in 200 job files; the kill test SIGKILLs a real ``rc2 aggregate``
subprocess in the middle and checks that a re-run registers everything exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from rc2_platform.butler import Butler
from rc2_platform.cli import main
from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import DatasetType
from rc2_platform.execution.aggregate import aggregate_run
from rc2_platform.execution.executor import QuantumOutcome
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.outputs_manifest import OUTPUTS_FILE
from rc2_platform.execution.provenance_table import PROVENANCE_DATASET_TYPE
from rc2_platform.execution.quantum_state import QuantumState
from rc2_platform.execution.records import RecordsWriter
from rc2_platform.graph import output_ref

RUN = "u/test/aggregate"
OUT = DatasetType("x_out", ("instrument", "detector"), "Json")
FILES, PER_FILE = 100, 5


def _repo(root: Path) -> Path:
    with Butler.create(root) as butler:
        butler.registry.insert_dimension_records("instrument", [{"instrument": "HSC"}])
        butler.registry.insert_dimension_records(
            "detector", [{"instrument": "HSC", "detector": d} for d in range(FILES * PER_FILE)]
        )
        butler.registry.register_run(RUN)
        butler.register_dataset_type(OUT)
    journal = Journal.for_run(root, RUN)
    journal.append("run_started", run=RUN, graph="none", tasks={"x": FILES * PER_FILE},
                   n_quanta=FILES * PER_FILE)  # fmt: skip
    return root


def _write_job(
    root: Path, job: int, quanta: range, *, end: bool = True, manifest: bool = False
) -> None:
    """One job's records as a worker writes them (with its outputs manifest: ``manifest``)."""
    journal = Journal.for_run(root, RUN)
    datastore = Butler.open_datastore(root)
    dims = {OUT.name: OUT.dimensions} if manifest else None
    with RecordsWriter(journal.job_dir(f"c{job}", 1) / "quanta.jsonl", dims) as writer:
        writer.job_started(f"c{job}", 1, 1, time.time())
        for d in quanta:
            data_id = DataCoordinate(("instrument", "detector"), ("HSC", d))
            ref = output_ref(OUT, data_id, RUN)
            record = datastore.put({"d": d}, ref, overwrite=True)
            outcome = QuantumOutcome(d, "x", dict(data_id.to_dict()), QuantumState.SUCCEEDED,
                                     timing={"start": 1.0, "end": 2.0, "wall_seconds": 1.0},
                                     records=[record], outputs=[[OUT.name, str(ref.id)]])  # fmt: skip
            writer.quantum(outcome)
        if end:
            writer.job_ended(time.time(), {"succeeded": len(quanta)})


def _counts(root: Path) -> tuple[int, int, int]:
    """(dataset rows, distinct dataset ids, datastore record rows) of x_out."""
    with sqlite3.connect(root / "registry.sqlite3") as conn:
        rows = conn.execute(
            "SELECT d.dataset_id FROM dataset d JOIN dataset_type t "
            "ON d.dataset_type_id = t.dataset_type_id WHERE t.name = 'x_out'"
        ).fetchall()
        ids = {r[0] for r in rows}
        placeholders = ",".join("?" * len(ids)) or "''"
        records = conn.execute(
            f"SELECT count(*) FROM file_datastore_records WHERE dataset_id IN ({placeholders})",
            list(ids),
        ).fetchone()[0]
    return len(rows), len(ids), records


def test_aggregate_is_incremental_and_idempotent(tmp_path: Path) -> None:
    root = _repo(tmp_path / "repo")
    _write_job(root, 0, range(0, 3), end=False)  # a job still running: 3 quanta so far
    first = aggregate_run(root, RUN, provenance=False)
    assert (first.quanta, first.registered) == (3, 3)
    _write_job(root, 1, range(3, 5))  # another job finished meanwhile
    second = aggregate_run(root, RUN, provenance=False)
    assert (second.files, second.quanta, second.registered) == (1, 2, 2)
    again = aggregate_run(root, RUN, provenance=False)
    assert (again.files, again.quanta, again.registered) == (0, 0, 0)
    # Without its checkpoint it reads everything again and registers nothing twice.
    (Journal.for_run(root, RUN).directory / "aggregated.json").unlink()
    redo = aggregate_run(root, RUN)
    assert (redo.quanta, redo.registered, redo.provenance_rows) == (5, 0, 5)
    assert _counts(root) == (5, 5, 5)
    with Butler(root) as butler:
        assert butler.registry.get_dataset_type(PROVENANCE_DATASET_TYPE.name)
        (prov,) = butler.query_datasets(PROVENANCE_DATASET_TYPE, collections=RUN)
        table = butler.get(prov)
    assert table.num_rows == 5 and set(table.column("state").to_pylist()) == {"succeeded"}


def test_a_job_recorded_twice_registers_its_outputs_once(tmp_path: Path) -> None:
    root = _repo(tmp_path / "repo")
    _write_job(root, 0, range(0, 4))
    _write_job(root, 0, range(2, 6))  # the batch system ran the same attempt again
    summary = aggregate_run(root, RUN, provenance=False)
    assert (summary.quanta, summary.registered) == (8, 6)
    assert _counts(root) == (6, 6, 6)


@pytest.mark.parametrize("manifest", [False, True], ids=["lines", "manifests"])
def test_aggregate_killed_mid_way_then_rerun_registers_everything_exactly_once(
    tmp_path: Path, manifest: bool
) -> None:
    root = _repo(tmp_path / "repo")
    for job in range(FILES):
        _write_job(root, job, range(job * PER_FILE, (job + 1) * PER_FILE), manifest=manifest)
    rc2 = Path(sys.executable).parent / "rc2"
    proc = subprocess.Popen(
        [str(rc2), "aggregate", str(root), RUN, "--batch-size", "1", "--no-provenance"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while _counts(root)[0] < 3 * PER_FILE:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = _counts(root)
    assert 0 < partial[0] < FILES * PER_FILE, partial  # killed in the middle
    assert partial[0] == partial[1] == partial[2]  # dataset rows and records together

    result = CliRunner().invoke(main, ["aggregate", str(root), RUN, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["registered"] == FILES * PER_FILE - partial[0]
    assert (summary["manifests"] > 0) == manifest
    assert _counts(root) == (FILES * PER_FILE,) * 3
    assert summary["provenance_rows"] == FILES * PER_FILE


@pytest.mark.parametrize("bad", ["no/such/run"])
def test_aggregate_of_an_unknown_run_is_one_line(tmp_path: Path, bad: str) -> None:
    root = _repo(tmp_path / "repo")
    result = CliRunner().invoke(main, ["aggregate", str(root), bad])
    assert result.exit_code == 1
    assert "no execution journal for RUN 'no/such/run'" in result.output
    assert "Traceback" not in result.output


def test_records_lines_read_whole_or_line_by_line(tmp_path: Path) -> None:
    """One parse of all lines when they are all JSON; otherwise bad lines are skipped."""
    from rc2_platform.execution.records import read_lines

    path = tmp_path / "quanta.jsonl"
    good = [{"kind": "quantum", "index": i} for i in range(3)]
    text = "".join(json.dumps(x) + "\n" for x in good)
    path.write_text(text + '{"kind": "quan')  # a writer still writing its last line
    assert read_lines(path) == (good, len(text))
    # A torn line in the middle and a line holding two values: skipped, the rest read.
    path.write_text(
        json.dumps(good[0]) + "\n" + '{"kind": "qu\n' + "1, 2\n" + json.dumps(good[1]) + "\n"
    )
    lines, end = read_lines(path)
    assert lines == [good[0], good[1]] and end == path.stat().st_size
    assert read_lines(path, end) == ([], end)


def _registered(root: Path) -> list[tuple[object, ...]]:
    """Every x_out dataset with its data ID and file record, sorted."""
    with sqlite3.connect(root / "registry.sqlite3") as conn:
        return sorted(
            conn.execute(
                "SELECT d.dataset_id, t.detector, r.path, r.formatter, r.storage_class, "
                "r.file_size FROM dataset d JOIN tags_1 t ON t.dataset_id = d.dataset_id "
                "JOIN file_datastore_records r ON r.dataset_id = d.dataset_id "
                "JOIN dataset_type dt ON dt.dataset_type_id = d.dataset_type_id "
                "WHERE dt.name = 'x_out'"
            ).fetchall()
        )


def _manifest_path(root: Path, job: int) -> Path:
    return Journal.for_run(root, RUN).job_dir(f"c{job}", 1) / OUTPUTS_FILE


def test_a_finished_job_writes_its_outputs_manifest_sorted_by_id(tmp_path: Path) -> None:
    root = _repo(tmp_path / "repo")
    _write_job(root, 0, range(0, 3), end=False, manifest=True)
    assert not _manifest_path(root, 0).exists()  # a job still running (or killed) has none
    _write_job(root, 1, range(3, 8), manifest=True)
    doc = json.loads(_manifest_path(root, 1).read_text())
    records = _manifest_path(root, 1).with_name("quanta.jsonl")
    assert (doc["version"], doc["start"], doc["end"], doc["quanta"]) == (
        2, 0, records.stat().st_size, 5
    )  # fmt: skip
    column = doc["types"]["x_out"]
    assert column["dimensions"] == ["instrument", "detector"]
    assert column["ids"] == sorted(column["ids"]) and len(column["ids"]) == 5
    assert column["data_ids"]["instrument"] == {"value": "HSC"}  # one value for all
    expected = {
        str(output_ref(OUT, DataCoordinate(("instrument", "detector"), ("HSC", d)), RUN).id): d
        for d in range(3, 8)
    }
    assert dict(zip(column["ids"], column["data_ids"]["detector"], strict=True)) == expected
    assert column["formatter"] == "json" and column["storage_class"] == "Json"


@pytest.mark.parametrize("manifest", [False, True], ids=["lines", "manifests"])
def test_manifests_register_exactly_what_the_lines_say(tmp_path: Path, manifest: bool) -> None:
    """Manifest or records lines: the same datasets, data IDs and file records."""
    reference = _repo(tmp_path / "lines")
    root = _repo(tmp_path / "repo")
    for target, with_manifest in ((reference, False), (root, manifest)):
        _write_job(target, 0, range(0, 4), manifest=with_manifest)
        _write_job(target, 1, range(4, 9), manifest=with_manifest)
        summary = aggregate_run(target, RUN, provenance=False)
        assert (summary.files, summary.quanta, summary.registered) == (2, 9, 9)
        assert summary.manifests == (2 if with_manifest else 0)
    assert _registered(root) == _registered(reference) and len(_registered(root)) == 9


@pytest.mark.parametrize(
    "spoil",
    [
        lambda doc: doc.update(version=99),
        lambda doc: doc.update(start=7),
        lambda doc: doc.update(end=10**9),
        lambda doc: doc["types"]["x_out"].update(dimensions=["detector", "instrument"]),
        lambda doc: doc["types"]["x_out"]["paths"].pop(),
        lambda doc: doc["types"]["x_out"]["data_ids"].update(detector=[1]),
        lambda doc: doc["types"]["x_out"].update(data_ids=[["HSC", 1]]),
        lambda doc: doc["types"]["x_out"].update(ids={"not": "a list"}),
        None,  # not JSON at all
    ],
    ids=["version", "start", "end", "dimensions", "lengths", "key", "keys", "ids", "torn"],
)
def test_an_unusable_manifest_is_ignored_for_the_lines(tmp_path: Path, spoil: object) -> None:
    reference = _repo(tmp_path / "lines")
    _write_job(reference, 0, range(0, 4))
    aggregate_run(reference, RUN, provenance=False)
    root = _repo(tmp_path / "repo")
    _write_job(root, 0, range(0, 4), manifest=True)
    path = _manifest_path(root, 0)
    if callable(spoil):
        doc = json.loads(path.read_text())
        spoil(doc)
        path.write_text(json.dumps(doc))
    else:
        path.write_text(path.read_text()[:40])
    summary = aggregate_run(root, RUN, provenance=False)
    assert (summary.quanta, summary.registered, summary.manifests) == (4, 4, 0)
    assert _registered(root) == _registered(reference)


def test_a_manifest_after_a_partial_registration_is_not_used_twice(tmp_path: Path) -> None:
    """Lines registered while the job ran; its manifest (from byte 0) is then ignored."""
    root = _repo(tmp_path / "repo")
    _write_job(root, 0, range(0, 3), end=False, manifest=True)
    assert aggregate_run(root, RUN, provenance=False).registered == 3
    # The same attempt run again to its end: a manifest of its own lines only.
    _write_job(root, 0, range(0, 6), manifest=True)
    doc = json.loads(_manifest_path(root, 0).read_text())
    assert doc["start"] > 0 and doc["quanta"] == 6
    summary = aggregate_run(root, RUN, provenance=False)
    assert (summary.quanta, summary.registered, summary.manifests) == (6, 3, 1)
    assert _counts(root) == (6, 6, 6)
    # Without the checkpoint: the manifest does not start at 0, every line is read again.
    (Journal.for_run(root, RUN).directory / "aggregated.json").unlink()
    redo = aggregate_run(root, RUN, provenance=False)
    assert (redo.quanta, redo.registered, redo.manifests) == (9, 0, 0)


def test_a_manifest_that_cannot_be_written_fails_nothing(tmp_path: Path) -> None:
    """The manifest is a shortcut: if it cannot be written the job still ends cleanly."""
    root = _repo(tmp_path / "repo")
    _manifest_path(root, 0).mkdir(parents=True)  # a directory where the file would go
    _write_job(root, 0, range(0, 4), manifest=True)
    folder = _manifest_path(root, 0).parent
    assert sorted(p.name for p in folder.iterdir()) == [OUTPUTS_FILE, "quanta.jsonl"]
    summary = aggregate_run(root, RUN, provenance=False)
    assert (summary.quanta, summary.registered, summary.manifests) == (4, 4, 0)
