"""``rc2 submit --dagman``: one DAG for the whole graph, then "be DAGMan" and register."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import htcondor2
import pytest
import yaml
from click.testing import CliRunner

from rc2_platform.butler import Butler
from rc2_platform.cli import main
from rc2_platform.execution.backends.htcondor import HTCondorBackend, LocalScheddDouble
from rc2_platform.execution.backends.htcondor.event_log import EventLogWriter
from rc2_platform.execution.backends.htcondor.submit import split_arguments, split_environment
from rc2_platform.execution.dagman_submit import FINAL_NODE, register_results, submit_graph_dag
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.report import build_report
from rc2_platform.graph import load_graph
from rc2_platform.graph.clustering import plan_clusters
from rc2_platform_tests.execution.dagman_player import Retry, node_runs, parse_dag, play_dagman
from rc2_platform_tests.execution.helpers import RUN, make_config, make_graph, make_repo


@pytest.fixture
def fake_dagman(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in ``condor_dagman`` on PATH: ``Submit.from_dag`` only needs it to exist."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "condor_dagman"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return exe


@pytest.fixture
def setup(tmp_path: Path) -> Path:
    butler, raws = make_repo(tmp_path / "repo")
    butler.close()
    make_graph(tmp_path / "g.qgraph", raws)
    (tmp_path / "exec.yaml").write_text(
        yaml.safe_dump(make_config(retries=2).model_dump(mode="json"))
    )
    return tmp_path


def _submit_dry(tmp: Path) -> Path:
    result = CliRunner().invoke(
        main,
        ["submit", str(tmp / "repo"), str(tmp / "g.qgraph"), "--backend", "htcondor",
         "--dagman", "--dry-run", "--dag-dir", str(tmp / "dag"),
         "--execution-config", str(tmp / "exec.yaml")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output
    (dag,) = (tmp / "dag").glob("*.dag")
    assert str(dag) in result.output
    return dag


def _parse_dag(dag: Path) -> tuple[dict[str, Path], dict[str, set[str]], dict[str, str], str]:
    nodes: dict[str, Path] = {}
    parents: dict[str, set[str]] = {}
    retries: dict[str, str] = {}
    final = ""
    for line in dag.read_text().splitlines():
        words = line.split()
        if words and words[0] in ("JOB", "FINAL"):
            nodes[words[1]] = Path(words[2])
            final = words[1] if words[0] == "FINAL" else final
        elif words and words[0] == "RETRY":
            retries[words[1]] = words[2]
        elif words and words[0] == "PARENT":
            split = words.index("CHILD")
            for child in words[split + 1 :]:
                parents.setdefault(child, set()).update(words[1:split])
    return nodes, parents, retries, final


def _command(sub: htcondor2.Submit) -> list[str]:
    return [sub["executable"], *split_arguments(sub["arguments"])]


def _run_node(sub: htcondor2.Submit) -> str:
    """Run a node's job as a schedd would: its command, environment and directory."""
    env = {**os.environ, **split_environment(sub.get("environment", ""))}
    proc = subprocess.run(
        _command(sub), env=env, cwd=sub.get("initialdir") or None,
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return proc.stdout


def _registered(repo: Path, dataset_type: str) -> int:
    with Butler(repo) as butler:
        return len(butler.query_datasets(dataset_type, collections=RUN))


def test_dry_run_dag_is_accepted_and_matches_the_cluster_plan(
    setup: Path, fake_dagman: Path
) -> None:
    tmp = setup
    dag = _submit_dry(tmp)
    description = htcondor2.Submit.from_dag(str(dag), {})
    assert f"-Dag {dag}" in description["arguments"]

    nodes, parents, retries, final = _parse_dag(dag)
    plan = plan_clusters(load_graph(tmp / "g.qgraph"), make_config().clustering)
    assert set(nodes) == set(plan.clusters) | {FINAL_NODE}
    assert final == FINAL_NODE
    assert {n: p for n, p in parents.items()} == {n: p for n, p in plan.parents.items() if p}
    assert retries == {name: "2" for name in plan.clusters}  # retry policy max_retries=2
    for name in plan.clusters:
        sub = htcondor2.Submit(nodes[name].read_text())
        command = _command(sub)
        assert command[1] == "run-cluster"
        assert command[command.index("--cluster") + 1] == name
        assert Path(command[2]).name == "job.qgraph" and Path(command[2]).exists()
        assert split_environment(sub["environment"])["RC2_JOB_MEMORY_MB"] == "2048"
        assert command[command.index("--repo") + 1] == str((tmp / "repo").resolve())
        assert sub["request_cpus"] == "1"
        assert sub["request_memory"].startswith("int(min({ifThenElse(isUndefined(MemoryUsage)")
    final_cmd = _command(htcondor2.Submit(nodes[FINAL_NODE].read_text()))
    assert final_cmd[1:] == ["aggregate", str((tmp / "repo").resolve()), RUN, "--finish"]


def test_being_dagman_registers_everything_and_report_shows_success(setup: Path) -> None:
    tmp = setup
    dag = _submit_dry(tmp)
    nodes, parents, _retries, final = _parse_dag(dag)
    assert _registered(tmp / "repo", "c_out") == 0  # nothing ran yet
    done: set[str] = set()
    order = [n for n in nodes if n != final]
    while len(done) < len(order):  # a topological order of the DAG
        ready = [n for n in order if n not in done and parents.get(n, set()) <= done]
        assert ready, "the DAG has a cycle"
        for name in ready:
            assert "succeeded" in _run_node(htcondor2.Submit(nodes[name].read_text()))
            done.add(name)
    out = _run_node(htcondor2.Submit(nodes[final].read_text()))
    assert f"RUN {RUN}: succeeded" in out
    for dt, n in (("a_out", 3), ("b_out", 3), ("c_out", 1)):
        assert _registered(tmp / "repo", dt) == n

    # Idempotent: running the FINAL node again registers nothing new and adds no job events.
    journal = Journal.for_run(tmp / "repo", RUN)
    finished = len(list(journal.events("job_finished")))
    assert register_results(tmp / "repo", RUN).status == "succeeded"
    assert len(list(journal.events("job_finished"))) == finished

    rep = CliRunner().invoke(main, ["report", str(tmp / "repo"), RUN, "--json"])
    assert rep.exit_code == 0, rep.output
    data = json.loads(rep.output)
    assert data["status"] == "succeeded"
    assert data["totals"]["succeeded"] == 7
    assert data["totals"]["failed"] == data["totals"]["pending"] == 0


def test_nodes_that_never_ran_stay_pending_and_a_dead_node_fails_and_blocks(setup: Path) -> None:
    tmp = setup
    _submit_dry(tmp)  # no node runs (DAGMan gave up): FINAL still settles what exists
    summary = register_results(tmp / "repo", RUN)
    assert summary.status == "failed"
    assert summary.counts == {
        "succeeded": 0, "failed": 0, "blocked": 0, "pending": 7, "running": 0
    }  # fmt: skip
    rep = build_report(tmp / "repo", RUN)
    assert rep.status == "failed"
    assert rep.tasks["a"]["pending"] == 3 and rep.tasks["a"]["retried"] == 0
    # Running it again (a rescue DAG's FINAL) adds no job event for nodes that never ran.
    journal = Journal.for_run(tmp / "repo", RUN)
    assert list(journal.events("job_finished")) == []

    # Node step1_HSC_1 ran and died (its event log says so, it recorded nothing): its
    # quanta fail, c (reading b[1]) is blocked, the nodes that never ran stay pending.
    node = next(e for e in journal.events("job_submitted") if e["cluster"] == "step1_HSC_1")
    log = EventLogWriter(Path(node["directory"]) / "step1_HSC_1.log")
    log.submitted(7, 0, "step1_HSC_1")
    log.executing(7, 0)
    log.terminated(7, 0, 1)
    summary = register_results(tmp / "repo", RUN)
    assert summary.counts == {
        "succeeded": 0, "failed": 2, "blocked": 1, "pending": 4, "running": 0
    }  # fmt: skip
    rep = build_report(tmp / "repo", RUN)
    assert rep.tasks["c"]["blocked"] == 1 and rep.tasks["a"]["failed"] == 1
    died = len(list(journal.events("job_finished")))
    register_results(tmp / "repo", RUN)
    assert len(list(journal.events("job_finished"))) == died == 1


def test_submit_goes_to_the_schedd_and_is_journaled(setup: Path, fake_dagman: Path) -> None:
    tmp = setup
    backend = HTCondorBackend(LocalScheddDouble(first_cluster=42))
    sub = submit_graph_dag(tmp / "g.qgraph", tmp / "repo", config=make_config(), backend=backend)
    assert sub.handle is not None and sub.handle.id == "42.0"
    assert sub.dag.exists() and sub.dag.with_name(sub.dag.name + ".condor.sub").exists()
    journal = Journal.for_run(tmp / "repo", RUN)
    event = journal.last("dag_submitted")
    assert event is not None and event["handle"]["id"] == "42.0"
    assert {e["cluster"] for e in journal.events("job_submitted")} == {j.name for j in sub.jobs}


def test_dagman_needs_htcondor_backend(setup: Path) -> None:
    tmp = setup
    result = CliRunner().invoke(
        main,
        ["submit", str(tmp / "repo"), str(tmp / "g.qgraph"), "--backend", "local",
         "--dagman"],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "--dagman needs --backend htcondor" in result.output


def _failing_dag(tmp: Path, **a_config: object) -> tuple[Path, dict[str, Path]]:
    """Submit (dry) the a -> b -> c graph with task ``a`` configured by ``a_config``."""
    butler, raws = make_repo(tmp / "repo")
    butler.close()
    (tmp / "counts").mkdir()
    make_graph(
        tmp / "g.qgraph", raws, configs={"a": {"counter_dir": str(tmp / "counts"), **a_config}}
    )
    config = make_config(retries=2)
    backend = HTCondorBackend(LocalScheddDouble(), config.backends.htcondor, config.retry)
    sub = submit_graph_dag(tmp / "g.qgraph", tmp / "repo", config=config, backend=backend,
                           dry_run=True)  # fmt: skip
    nodes, _parents, retries, _final = parse_dag(sub.dag)
    assert retries == {job.name: Retry(2) for job in sub.jobs}
    return sub.dag, nodes


def _a_runs(tmp: Path, detector: int) -> int:
    lines = (tmp / "counts" / "a.log").read_text().splitlines()
    return sum(f"('detector', {detector})" in line for line in lines)


def test_quantum_failures_exit_0_so_dagman_runs_their_node_once(tmp_path: Path) -> None:
    # Detector 0: unusable data (TaskDataError, in retry.not_retried); detector 1: a
    # retriable TaskError. The worker records both and exits 0 ("quantum failures are
    # data"), so the DAG's RETRY 2 never reruns their nodes: no job attempt is spent on
    # the deterministic failure. (Nor on the retriable one: a DAGMan run does not retry
    # quantum failures, docs/execution.md "Limits".)
    dag, nodes = _failing_dag(tmp_path, data_error_on=[{"detector": 0}], fail_on=[{"detector": 1}])
    codes = play_dagman(dag)
    assert codes.pop(FINAL_NODE) == 3  # rc2 aggregate --finish: some quanta failed
    assert set(codes.values()) == {0}
    assert {name: node_runs(nodes[name]) for name in codes} == {name: 1 for name in codes}
    assert [_a_runs(tmp_path, d) for d in (0, 1, 2)] == [1, 1, 1]

    rep = build_report(tmp_path / "repo", RUN)
    assert rep.status == "failed"
    assert rep.tasks["a"]["failed"] == 2 and rep.tasks["a"]["retried"] == 0
    assert rep.tasks["b"]["blocked"] == 2 and rep.tasks["c"]["blocked"] == 1
    assert sorted(e["exception_type"] for e in rep.errors) == ["TaskDataError", "TaskError"]


def test_a_node_whose_job_dies_is_rerun_by_the_dag_retry(tmp_path: Path) -> None:
    # Detector 1's job dies (the stand-in's os._exit(3)): a non-zero exit, so DAGMan
    # reruns the node RETRY (2) more times; its child never runs.
    dag, nodes = _failing_dag(tmp_path, exit_on=[{"detector": 1}])
    codes = play_dagman(dag)
    assert codes.pop(FINAL_NODE) == 3
    died = next(name for name, code in codes.items() if code == 3)
    assert node_runs(nodes[died]) == 3 and _a_runs(tmp_path, 1) == 3
    assert [code for name, code in codes.items() if name.startswith("step2")] == [None]
    rep = build_report(tmp_path / "repo", RUN)
    assert rep.tasks["a"]["failed"] == 1 and rep.tasks["c"]["blocked"] == 1
