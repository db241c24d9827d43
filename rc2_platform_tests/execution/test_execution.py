"""Execution of a tiny stand-in graph: success, failures, blocked, resume, retries, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from rc2_platform.butler import Butler
from rc2_platform.cli import main
from rc2_platform.execution.backends.htcondor import HTCondorBackend, LocalScheddDouble
from rc2_platform.execution.executor import PreparedTask, QuantumExecutor
from rc2_platform.execution.job import run_cluster
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.report import build_report
from rc2_platform.execution.runner import RunOptions, restart_run, run_graph
from rc2_platform.graph import load_graph
from rc2_platform_tests.execution.helpers import (
    B_OUT,
    C_OUT,
    RUN,
    make_config,
    make_graph,
    make_repo,
)

OPTS = RunOptions(jobs=2)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, dict]:
    butler, raws = make_repo(tmp_path / "repo")
    butler.close()
    return tmp_path, raws


def _registered(repo: Path, dataset_type: str) -> set[int | str]:
    with Butler(repo) as butler:
        refs = butler.query_datasets(dataset_type, collections=RUN)
        return {r.data_id.get("detector", "all") for r in refs}


def _executions(counter: Path, label: str) -> list[str]:
    path = counter / f"{label}.log"
    return path.read_text().splitlines() if path.exists() else []


def test_all_quanta_succeed_and_outputs_are_registered(setup: tuple[Path, dict]) -> None:
    tmp, raws = setup
    make_graph(tmp / "g.qgraph", raws)
    summary = run_graph(tmp / "g.qgraph", tmp / "repo", config=make_config(), options=OPTS)
    assert summary.status == "succeeded"
    assert summary.counts["succeeded"] == 7
    assert _registered(tmp / "repo", "a_out") == {0, 1, 2}
    assert _registered(tmp / "repo", "b_out") == {0, 1, 2}
    assert _registered(tmp / "repo", "c_out") == {"all"}
    with Butler(tmp / "repo", collections=RUN) as butler:
        assert butler.exists("c_out", {"instrument": "HSC"})
        meta = butler.get("b_metadata", {"instrument": "HSC", "detector": 1})
        config = butler.get("a_config", {})
    quantum = meta["quantum"]
    assert quantum["wall_seconds"] >= quantum["run_seconds"] >= 0
    assert {"rc2_platform", "numpy", "astropy", "python"} <= set(quantum["software"])
    assert quantum["peak_rss_mb"] > 0 and quantum["host"]["hostname"]
    assert len(quantum["inputs_read"]) == 1  # provenance: the a_out it read
    assert isinstance(meta["log"], list)
    assert config["fail_on"] == []


def test_failure_blocks_downstream_and_resume_completes_without_redoing(
    setup: tuple[Path, dict],
) -> None:
    tmp, raws = setup
    marker, counter = tmp / "broken", tmp / "counts"
    marker.touch()
    counter.mkdir()
    cfg = {
        "fail_on": [{"detector": 1}],
        "only_while_exists": str(marker),
        "counter_dir": str(counter),
    }
    plain = {"counter_dir": str(counter)}
    make_graph(tmp / "g.qgraph", raws, configs={"a": cfg, "b": plain, "c": plain})
    summary = run_graph(tmp / "g.qgraph", tmp / "repo", config=make_config(), options=OPTS)
    assert summary.status == "failed"
    report = build_report(tmp / "repo", RUN)
    assert report.tasks["a"] == {
        "succeeded": 2,
        "failed": 1,
        "blocked": 0,
        "running": 0,
        "pending": 0,
        "retried": 0,
    }
    assert report.status == "failed" and report.orchestrator == "ended"
    assert report.tasks["b"]["succeeded"] == 2 and report.tasks["b"]["blocked"] == 1
    assert report.tasks["c"]["blocked"] == 1
    assert len(report.errors) == 1 and report.errors[0]["data_ids"] == [
        {"instrument": "HSC", "detector": 1}
    ]
    assert "told to fail" in report.errors[0]["message"]
    assert _registered(tmp / "repo", "a_out") == {0, 2}
    assert _registered(tmp / "repo", "c_out") == set()

    marker.unlink()  # the fix
    summary = restart_run(tmp / "repo", RUN)
    assert summary.status == "succeeded"
    assert _registered(tmp / "repo", "b_out") == {0, 1, 2}
    assert len(_executions(counter, "a")) == 4  # 3 + the one retried after the fix
    assert len(_executions(counter, "b")) == 3  # b[1] ran once, b[0], b[2] not redone
    final = build_report(tmp / "repo", RUN)
    assert sum(t["succeeded"] for t in final.tasks.values()) == 7
    assert final.errors == []


def test_killed_job_keeps_what_it_recorded_and_resume_runs_the_rest(
    setup: tuple[Path, dict],
) -> None:
    tmp, raws = setup
    marker, counter = tmp / "kill", tmp / "counts"
    marker.touch()
    counter.mkdir()
    cfg = {"exit_on": [{"detector": 2}], "only_while_exists": str(marker),
           "counter_dir": str(counter)}  # fmt: skip
    plain = {"counter_dir": str(counter)}
    make_graph(tmp / "g.qgraph", raws, configs={"a": plain, "b": cfg, "c": plain})
    summary = run_graph(tmp / "g.qgraph", tmp / "repo", config=make_config(), options=OPTS)
    assert summary.status == "failed"
    # a[2] recorded its success before b[2] killed the job: its output is complete and
    # registered; b[2] has no record (failed: the job died) and nothing of it is registered.
    assert _registered(tmp / "repo", "a_out") == {0, 1, 2}
    assert _registered(tmp / "repo", "b_out") == {0, 1}
    report = build_report(tmp / "repo", RUN)
    assert report.tasks["a"]["failed"] == 0 and report.tasks["b"]["failed"] == 1
    assert report.tasks["c"]["blocked"] == 1
    assert report.errors[0]["message"].startswith("job died")
    assert report.badput_seconds > 0
    marker.unlink()
    summary = run_graph(
        tmp / "g.qgraph",
        tmp / "repo",
        config=make_config(),
        options=RunOptions(jobs=2, resume=True),
    )
    assert summary.status == "succeeded"
    assert _registered(tmp / "repo", "b_out") == {0, 1, 2}
    assert _registered(tmp / "repo", "c_out") == {"all"}
    assert len(_executions(counter, "a")) == 3  # a[2] is not redone


def test_retries_are_counted_and_memory_is_escalated(setup: tuple[Path, dict]) -> None:
    tmp, raws = setup
    cfg = {
        "fail_on": [{"detector": 0}],
        "memory_error_on": [{"detector": 1}],
        "memory_needed_mb": 3000,
    }
    make_graph(tmp / "g.qgraph", raws, configs={"a": cfg})
    config = make_config(retries=1, memory_multiplier=2.0, max_memory_mb=8192)
    summary = run_graph(tmp / "g.qgraph", tmp / "repo", config=config, options=OPTS)
    assert summary.counts == {"succeeded": 4, "failed": 1, "blocked": 2, "pending": 0, "running": 0}
    report = build_report(tmp / "repo", RUN)
    assert report.tasks["a"]["retried"] == 2  # a[0] (fails again) and a[1] (memory)
    assert report.tasks["a"]["succeeded"] == 2
    journal = Journal.for_run(tmp / "repo", RUN)
    retries = {e["cluster"]: e for e in journal.events("retry_scheduled")}
    assert retries["step1_HSC_1"]["memory_escalated"] is True
    assert retries["step1_HSC_1"]["memory_mb"] == 4096
    assert retries["step1_HSC_0"]["memory_escalated"] is False
    assert report.memory_lines() == [  # only the memory retry, with the memory asked for
        "step1_HSC_1 attempt 1 (2048 MiB) killed for memory: a quantum raised MemoryError "
        "-> attempt 2 requests 4096 MiB"
    ]


def test_a_job_killed_for_memory_at_the_cap_is_not_retried(setup: tuple[Path, dict]) -> None:
    """The same memory again would be killed again: failed at once, the cap named."""
    tmp, raws = setup
    cfg = {"memory_error_on": [{"detector": 1}], "memory_needed_mb": 10000}
    make_graph(tmp / "g.qgraph", raws, configs={"a": cfg})
    config = make_config(retries=3, memory_multiplier=2.0, max_memory_mb=4096)
    summary = run_graph(tmp / "g.qgraph", tmp / "repo", config=config, options=OPTS)
    assert summary.counts["failed"] == 1
    journal = Journal.for_run(tmp / "repo", RUN)
    assert [(e["attempt"], e["memory_mb"]) for e in journal.events("retry_scheduled")] == [
        (2, 4096)
    ]  # 2048 -> 4096, then not again at 4096
    (capped,) = journal.events("memory_cap_reached")
    assert (capped["attempt"], capped["memory_mb"], capped["max_memory_mb"]) == (2, 4096, 4096)
    assert build_report(tmp / "repo", RUN).memory_lines() == [
        "step1_HSC_1 attempt 1 (2048 MiB) killed for memory: a quantum raised MemoryError "
        "-> attempt 2 requests 4096 MiB",
        "step1_HSC_1 attempt 2 (4096 MiB) killed for memory: a quantum raised MemoryError "
        "-> not retried: it ran at retry.max_memory_mb of the execution config",
    ]


@pytest.mark.parametrize(("in_queue", "retry_mb"), [(False, 4096), (True, 16384)])
def test_a_memory_kill_after_three_starts_escalates_by_what_the_queue_did(
    setup: tuple[Path, dict], in_queue: bool, retry_mb: int
) -> None:
    """Three starts of one job: HTCondor raised the request at each (x2 per start, so the
    retry asks 2048 x 2**3); a Kubernetes Job's three pods all ran with 2048 (x2 once)."""
    import dataclasses

    from rc2_platform.execution.backends import JobState, JobStatus
    from rc2_platform.execution.backends.local import LocalBackend

    seen: list[str] = []

    class StartedThrice(LocalBackend):
        """The local backend, reporting a memory kill after three starts (a batch system's
        restarts cannot run here)."""

        def status(self, handles: Any) -> dict[str, JobStatus]:
            out = super().status(handles)
            for handle in handles:  # the first attempt of the cluster whose quantum needs more
                status = out[handle.id]
                if status.state.is_terminal and handle.job_name == "step1_HSC_1" and not seen:
                    seen.append(handle.id)
                    out[handle.id] = dataclasses.replace(
                        status, state=JobState.FAILED, attempts=3, memory_exceeded=True,
                        escalated_in_queue=in_queue,
                    )  # fmt: skip
            return out

    tmp, raws = setup
    cfg = {"memory_error_on": [{"detector": 1}], "memory_needed_mb": 3000}
    make_graph(tmp / "g.qgraph", raws, configs={"a": cfg})
    config = make_config(retries=1, memory_multiplier=2.0, max_memory_mb=65536)
    summary = run_graph(tmp / "g.qgraph", tmp / "repo", config=config, options=OPTS,
                        backend=StartedThrice(max_workers=2))  # fmt: skip
    assert summary.counts["failed"] == 0
    (retry,) = Journal.for_run(tmp / "repo", RUN).events("retry_scheduled")
    assert (retry["attempt"], retry["memory_mb"]) == (2, retry_mb)


def test_ready_jobs_are_submitted_in_growing_chunks_the_first_alone(
    setup: tuple[Path, dict],
) -> None:
    """The first job starts before the other ready jobs' graph files are written (a tract
    starts 50 at once), and a batch system still gets few submissions."""
    from rc2_platform.execution.backends.local import LocalBackend

    sizes: list[int] = []

    class Counting(LocalBackend):
        def submit(self, jobs: Any) -> Any:
            sizes.append(len(jobs))
            return super().submit(jobs)

    tmp, raws = setup
    make_graph(tmp / "g.qgraph", raws)
    summary = run_graph(tmp / "g.qgraph", tmp / "repo", config=make_config(), options=OPTS,
                        backend=Counting(max_workers=2))  # fmt: skip
    assert summary.status == "succeeded"
    submitted = list(Journal.for_run(tmp / "repo", RUN).events("job_submitted"))
    assert sum(sizes) == len(submitted)
    first_wave = len({e["cluster"] for e in submitted if e["cluster"].startswith("step1")})
    assert first_wave >= 3  # enough ready jobs at the start for chunks to show
    assert sizes[:2] == [1, 2]


def test_unusable_data_is_not_retried_but_other_failures_are(setup: tuple[Path, dict]) -> None:
    tmp, raws = setup
    cfg = {"data_error_on": [{"detector": 0}], "fail_on": [{"detector": 1}]}
    make_graph(tmp / "g.qgraph", raws, configs={"a": cfg})
    summary = run_graph(tmp / "g.qgraph", tmp / "repo", config=make_config(retries=2), options=OPTS)
    assert summary.counts["failed"] == 2
    journal = Journal.for_run(tmp / "repo", RUN)
    retried = sorted(e["cluster"] for e in journal.events("retry_scheduled"))
    assert retried == ["step1_HSC_1", "step1_HSC_1"]  # TaskError: 2 retries; TaskDataError: none
    report = build_report(tmp / "repo", RUN)
    errors = {g["exception_type"] for g in report.errors}
    assert errors == {"TaskDataError", "TaskError"}


def test_report_json_table_and_png(setup: tuple[Path, dict]) -> None:
    tmp, raws = setup
    make_graph(tmp / "g.qgraph", raws, configs={"c": {"fail_on": [{"instrument": "HSC"}]}})
    run_graph(tmp / "g.qgraph", tmp / "repo", config=make_config(), options=OPTS)
    runner = CliRunner()
    png = tmp / "timeline.png"
    result = runner.invoke(main, ["report", str(tmp / "repo"), RUN, "--json", "--png", str(png)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["totals"]["succeeded"] == 6 and data["totals"]["failed"] == 1
    assert data["workflow_wall_seconds"] > 0 and data["cumulative_job_wall_seconds"] > 0
    assert set(data["timing"]) == {"a", "b", "c"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = runner.invoke(main, ["report", str(tmp / "repo"), RUN])
    assert table.exit_code == 0 and "told to fail" in table.output
    missing = runner.invoke(main, ["report", str(tmp / "repo"), "no/such/run"])
    assert missing.exit_code == 1 and "no execution journal" in missing.output


def test_two_processes_give_the_same_results(setup: tuple[Path, dict]) -> None:
    tmp, raws = setup
    graph = make_graph(tmp / "g.qgraph", raws, configs={"a": {"fail_on": [{"detector": 2}]}})
    everything = list(range(len(graph)))
    one = run_cluster(tmp / "g.qgraph", "all", tmp / "repo", quanta=everything, processes=1)
    two = run_cluster(tmp / "g.qgraph", "all", tmp / "repo", quanta=everything, processes=2)
    assert [(o.index, o.status) for o in one.outcomes] == [
        (o.index, o.status) for o in two.outcomes
    ]
    assert [o.status for o in two.outcomes].count("blocked") == 2  # b[2] and c
    assert sorted(r.path for o in one.outcomes for r in o.records) == sorted(
        r.path for o in two.outcomes for r in o.records
    )


def test_unexpected_output_is_a_clear_failure(setup: tuple[Path, dict]) -> None:
    tmp, raws = setup
    classes = {"a": "rc2_platform_tests.execution.helpers.BadOutputTask"}
    graph = make_graph(tmp / "g.qgraph", raws, classes=classes)
    executor = QuantumExecutor(Butler.open_datastore(tmp / "repo"), RUN)
    outcome = executor.execute(graph.quanta[0], PreparedTask(graph.tasks[0]))
    assert outcome.status == "failed" and outcome.error_type == "QuantumOutputError"
    assert "unexpected output(s) ['surprise']" in (outcome.error or "")
    assert outcome.records == []


def test_run_on_htcondor_backend_with_schedd_double(setup: tuple[Path, dict]) -> None:
    tmp, raws = setup
    make_graph(tmp / "g.qgraph", raws)
    config = make_config()
    backend = HTCondorBackend(LocalScheddDouble(), config.backends.htcondor, config.retry)
    summary = run_graph(tmp / "g.qgraph", tmp / "repo", config=config, backend=backend)
    assert summary.status == "succeeded"
    assert _registered(tmp / "repo", "c_out") == {"all"}
    subs = list((tmp / "repo" / "_runs").rglob("*.sub"))
    assert subs and "run-cluster" in subs[0].read_text()


def test_cli_run_and_cancel(setup: tuple[Path, dict]) -> None:
    tmp, raws = setup
    make_graph(tmp / "g.qgraph", raws)
    cfg_file = tmp / "exec.yaml"
    cfg_file.write_text(yaml.safe_dump(make_config().model_dump(mode="json")))
    runner = CliRunner()
    args = [
        "run",
        str(tmp / "repo"),
        str(tmp / "g.qgraph"),
        "--execution-config",
        str(cfg_file),
    ]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output
    cancel = runner.invoke(main, ["cancel", str(tmp / "repo"), RUN])
    assert cancel.exit_code == 0 and "0 unfinished" in cancel.output
    assert Journal.for_run(tmp / "repo", RUN).cancel_requested()
    assert load_graph(tmp / "g.qgraph").output_run == RUN
    assert {C_OUT.name, B_OUT.name} <= {
        t.name for t in Butler(tmp / "repo").registry.query_dataset_types()
    }


def test_graph_against_a_repository_without_its_inputs_registers_nothing(
    setup: tuple[Path, dict],
) -> None:
    tmp, raws = setup
    make_graph(tmp / "g.qgraph", raws)
    other = tmp / "other"
    make_repo(other)[0].close()  # same dimension records, raws of its own (other ids)
    result = CliRunner().invoke(main, ["run", str(tmp / "g.qgraph"), "--repo", str(other)])
    assert result.exit_code == 1
    assert "3 of the 3 inputs of graph" in result.output
    assert "nothing was registered" in result.output
    assert "Traceback" not in result.output
    with Butler(other) as butler:
        assert RUN not in set(butler.registry.query_collections())
        assert "a_out" not in {t.name for t in butler.registry.query_dataset_types()}
