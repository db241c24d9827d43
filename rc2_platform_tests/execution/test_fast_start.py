"""Job start-up savings: fork-server launcher, self-contained job graphs, input cache,
header-only raws readable by the stand-ins."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from astropy.io import fits

from rc2_platform.datastore import FitsExposureFormatter
from rc2_platform.execution.backends import ClusterJob, JobState, LocalBackend
from rc2_platform.execution.backends._fork import ForkedJob
from rc2_platform.execution.executor import QuantumExecutor
from rc2_platform.execution.job import JobResult, run_cluster, write_job_graph
from rc2_platform.execution.runner import worker_command
from rc2_platform.simulate.fastfits import write_header_only
from rc2_platform_tests.execution.helpers import RUN, make_graph, make_repo


def _rc2_job(
    tmp_path: Path, name: str, *args: str, env: dict[str, str] | None = None
) -> ClusterJob:
    return ClusterJob(
        name=name,
        command=[*worker_command(), *args],
        request_memory_mb=100,
        request_cpus=1,
        env=env or {},
        working_dir=tmp_path / "work",
        log_dir=tmp_path / "logs",
    )


@pytest.mark.parametrize("launcher", ["forkserver", "fork"])
def test_forkserver_launcher_forks_worker_commands_with_exit_codes_and_logs(
    tmp_path: Path, launcher: Literal["forkserver", "fork"]
) -> None:
    # "fork": forked from this process itself (what a Dagster step of rc2_executor uses).
    backend = LocalBackend(max_workers=2, launcher=launcher)
    ok = _rc2_job(tmp_path, "ok", "run-cluster", "--help")
    bad = _rc2_job(
        tmp_path, "bad", "run-cluster", str(tmp_path / "missing.qgraph"), "--cluster", "c",
        "--repo", str(tmp_path), "--result", str(tmp_path / "r.jsonl"),
    )  # fmt: skip
    handles = backend.submit([ok, bad])
    statuses = backend.wait(handles, poll_seconds=0.02, timeout=120)
    assert all(isinstance(backend._jobs[h.id].process, ForkedJob) for h in handles)
    assert statuses[handles[0].id].state is JobState.SUCCEEDED
    assert statuses[handles[1].id].state is JobState.FAILED
    assert statuses[handles[1].id].exit_code == 2  # usage error: the file does not exist
    assert "usage: rc2 run-cluster" in (tmp_path / "logs" / "ok.out").read_text()
    assert "missing.qgraph" in (tmp_path / "logs" / "bad.err").read_text()


def test_forkserver_launcher_runs_other_commands_as_subprocesses(tmp_path: Path) -> None:
    backend = LocalBackend(max_workers=1, launcher="forkserver")
    job = ClusterJob(
        name="py",
        command=["/bin/sh", "-c", "echo $RC2_X; exit 4"],
        request_memory_mb=100,
        request_cpus=1,
        env={"RC2_X": "seen"},
        working_dir=tmp_path,
        log_dir=tmp_path,
    )
    (handle,) = backend.submit([job])
    status = backend.wait([handle], poll_seconds=0.02, timeout=60)[handle.id]
    assert not isinstance(backend._jobs[handle.id].process, ForkedJob)
    assert status.exit_code == 4
    assert "seen" in (tmp_path / "py.out").read_text()


def test_job_graph_keeps_original_indexes_and_carries_input_records(tmp_path: Path) -> None:
    butler, raws = make_repo(tmp_path / "repo")
    graph = make_graph(tmp_path / "g.qgraph", raws)
    records = butler.datastore_records(list(raws.values()))
    butler.close()
    # Quanta 2, 3 = detector 1's a and b; the job graph holds them as 0, 1.
    write_job_graph(tmp_path / "job.qgraph", graph, [2, 3], records, "det1")
    result = run_cluster(tmp_path / "job.qgraph", "det1", tmp_path / "repo")
    assert [(o.index, o.status) for o in result.outcomes] == [(2, "succeeded"), (3, "succeeded")]
    assert [o.data_id["detector"] for o in result.outcomes] == [1, 1]
    only_b = run_cluster(tmp_path / "job.qgraph", "det1", tmp_path / "repo", quanta=[3])
    assert [o.index for o in only_b.outcomes] == [3]
    written = JobResult(result.cluster, 1, 0.0, 0.0, "h", 1, result.outcomes)
    assert {str(r.dataset_id) for o in written.outcomes for r in o.records} == {
        str(r.id) for i in (2, 3) for r in graph.quanta[i].all_outputs()
    }


def test_overall_inputs_are_cached_and_handed_out_as_copies(tmp_path: Path) -> None:
    butler, raws = make_repo(tmp_path / "repo")
    records = butler.datastore_records(list(raws.values()))
    executor = QuantumExecutor(butler.datastore, RUN, records)
    read: list[str] = []
    first = executor._read(raws[0], read)
    first["pixels"].append("changed by a task")
    second = executor._read(raws[0], read)
    # A task declaring leaves_inputs_unchanged (the stand-in) is handed the cached object.
    shared = executor._read(raws[0], read, shared=True)
    butler.close()
    assert second == {"pixels": [0]}
    assert shared is executor._read(raws[0], read, shared=True) and shared is not second
    assert read == [str(raws[0].id)] * 4


def test_header_only_fits_reads_as_empty_exposure_with_header(tmp_path: Path) -> None:
    header = fits.Header()
    header["EXPID"] = 1228
    path = tmp_path / "raw.fits"
    write_header_only(path, header)
    exposure = FitsExposureFormatter().read(path)
    assert exposure.image.shape == (0, 0)
    assert exposure.header["EXPID"] == 1228
    pixels = tmp_path / "img.fits"
    fits.PrimaryHDU(np.ones((2, 3), dtype=np.float32)).writeto(pixels)
    assert FitsExposureFormatter().read(pixels).image.shape == (2, 3)
