"""``rc2 submit --dagman``: one DAG for the whole graph, then "be DAGMan" and register."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import classad2
import htcondor2
import pytest
import yaml
from click.testing import CliRunner

from rc2_platform.butler import Butler
from rc2_platform.cli import main
from rc2_platform.execution import dagman_post
from rc2_platform.execution.backends.htcondor import HTCondorBackend, LocalScheddDouble
from rc2_platform.execution.backends.htcondor.event_log import EventLogWriter
from rc2_platform.execution.backends.htcondor.submit import split_arguments, split_environment
from rc2_platform.execution.dagman_submit import FINAL_NODE, register_results, submit_graph_dag
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.report import build_report
from rc2_platform.graph import load_graph
from rc2_platform.graph.clustering import plan_clusters
from rc2_platform.provenance_query import query_provenance
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


def _command(sub: htcondor2.Submit, retry: int = 0) -> list[str]:
    """The node job's command as DAGMan submits it (``VARS rc2_retry="$(RETRY)"``)."""
    sub["rc2_retry"] = str(retry)
    return [sub["executable"], *split_arguments(sub.expand("arguments"))]


def _run_node(sub: htcondor2.Submit) -> str:
    """Run a node's job (first run) as a schedd would: its command, environment and directory."""
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
    lines = dag.read_text().splitlines()
    repo = str((tmp / "repo").resolve())
    for name in plan.clusters:
        sub = htcondor2.Submit(nodes[name].read_text())
        command = _command(sub)
        assert command[command.index("--dag-retry") :] == ["--dag-retry", "0"]
        assert command[command.index("--attempt") + 1] == "1"
        assert f"RETRY {name} 2 UNLESS-EXIT 2" in lines  # 2: the POST script's "failed for good"
        assert f'VARS {name} rc2_node="{name}" rc2_retry="$(RETRY)"' in lines
        post = f"SCRIPT POST {name} {command[0]} dagman-post {repo} {RUN} {name} --attempt 1"
        assert f"{post} --return $RETURN --retry $RETRY --max-retries $MAX_RETRIES" in lines
        assert command[1] == "run-cluster"
        assert command[command.index("--cluster") + 1] == name
        assert Path(command[2]).name == "job.qgraph" and Path(command[2]).exists()
        assert split_environment(sub["environment"])["RC2_JOB_MEMORY_MB"] == "2048"
        assert command[command.index("--repo") + 1] == str((tmp / "repo").resolve())
        assert sub["request_cpus"] == "1"
        assert sub["request_memory"].startswith("int(min({ifThenElse(isUndefined(MemoryUsage)")
    final_cmd = _command(htcondor2.Submit(nodes[FINAL_NODE].read_text()))
    assert final_cmd[1:] == ["aggregate", repo, RUN, "--finish"]
    assert not any(line.startswith(f"SCRIPT POST {FINAL_NODE} ") for line in lines)


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


def _failing_dag(
    tmp: Path,
    b_config: dict[str, object] | None = None,
    hold_grace_seconds: float | None = 600.0,
    **a_config: object,
) -> tuple[Path, dict[str, Path]]:
    """Submit (dry) the a -> b -> c graph with tasks ``a`` and ``b`` configured so."""
    butler, raws = make_repo(tmp / "repo")
    butler.close()
    (tmp / "counts").mkdir()
    counter = {"counter_dir": str(tmp / "counts")}
    make_graph(
        tmp / "g.qgraph", raws,
        configs={"a": {**counter, **a_config}, "b": {**counter, **(b_config or {})}, "c": counter},
    )  # fmt: skip
    config = make_config(retries=2)
    settings = config.backends.htcondor.model_copy(
        update={"hold_grace_seconds": hold_grace_seconds}
    )
    config = config.model_copy(
        update={"backends": config.backends.model_copy(update={"htcondor": settings})}
    )
    backend = HTCondorBackend(LocalScheddDouble(), config.backends.htcondor, config.retry)
    sub = submit_graph_dag(tmp / "g.qgraph", tmp / "repo", config=config, backend=backend,
                           dry_run=True)  # fmt: skip
    nodes, _parents, retries, _final = parse_dag(sub.dag)
    assert retries == {job.name: Retry(2, 2) for job in sub.jobs}
    return sub.dag, nodes


def _runs(tmp: Path, task: str, detector: int | None = None) -> int:
    path = tmp / "counts" / f"{task}.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return sum(detector is None or f"('detector', {detector})" in line for line in lines)


def _a_runs(tmp: Path, detector: int) -> int:
    return _runs(tmp, "a", detector)


def _node_failing_once_after_its_first_run(
    tmp: Path,
) -> tuple[dict[str, Path], str, htcondor2.Submit]:
    """A DAG whose a[1] fails once (retriable): its node, run once as a schedd would, with
    the DAG's node files and the node's submit description."""
    _, nodes = _failing_dag(tmp, fail_on=[{"detector": 1}], once_marker=str(tmp / "failed-once"))
    node = _node(nodes, 1)
    sub = htcondor2.Submit(nodes[node].read_text())
    _run_node(sub)
    return nodes, node, sub


def _node(nodes: dict[str, Path], detector: int) -> str:
    return next(
        name for name in nodes if name.startswith("step1") and name.endswith(f"_{detector}")
    )


@dataclass
class _Played:
    """A DAG played through a schedd double: folder, DAG, nodes, exit values, schedd."""

    tmp: Path
    dag: Path
    nodes: dict[str, Path]
    codes: dict[str, int | None]
    schedd: LocalScheddDouble


@pytest.fixture(scope="module")
def retried(tmp_path_factory: pytest.TempPathFactory) -> _Played:
    """One played DAG for the tests that only read its results: a[1] fails once with a
    retriable TaskError (the stand-in's once_marker), a[2] raises MemoryError unless its
    job has 4096 MB (the base is 2048), detector 0 succeeds."""
    tmp = tmp_path_factory.mktemp("retried")
    dag, nodes = _failing_dag(
        tmp, fail_on=[{"detector": 1}], once_marker=str(tmp / "failed-once"),
        memory_error_on=[{"detector": 2}], memory_needed_mb=4096,
    )  # fmt: skip
    schedd = LocalScheddDouble()
    return _Played(tmp, dag, nodes, play_dagman(dag, schedd), schedd)


def test_a_retriable_failure_is_retried_by_the_dag_and_its_downstream_runs(
    retried: _Played,
) -> None:
    # a[1]'s node's POST script sees its retriable failure, prepares attempt 2 (a[1] and
    # b[1], blocked behind it) and exits 1, so DAGMan reruns the node: attempt 2 runs
    # only those two quanta and succeeds; the POST script exits 0 and step2 (c) runs on
    # every b. (a[2]'s node is retried likewise, for memory: the next test.)
    tmp_path, nodes, codes = retried.tmp, retried.nodes, dict(retried.codes)
    assert codes.pop(FINAL_NODE) == 0  # rc2 aggregate --finish: every quantum succeeded
    assert set(codes.values()) == {0}
    flaky, memory = _node(nodes, 1), _node(nodes, 2)
    assert {name: node_runs(path) for name, path in nodes.items() if name != FINAL_NODE} == {
        name: 2 if name in (flaky, memory) else 1 for name in codes
    }
    assert [_a_runs(tmp_path, d) for d in (0, 1, 2)] == [1, 2, 2]
    assert [_runs(tmp_path, "b", d) for d in (0, 1, 2)] == [1, 1, 1]  # b[1], b[2] in attempt 2
    assert _runs(tmp_path, "c") == 1
    for dt, n in (("a_out", 3), ("b_out", 3), ("c_out", 1)):
        assert _registered(tmp_path / "repo", dt) == n

    rep = build_report(tmp_path / "repo", RUN)
    assert rep.status == "succeeded" and rep.errors == []
    assert rep.tasks["a"]["succeeded"] == 3 and rep.tasks["a"]["retried"] == 2  # a[1], a[2]
    assert rep.tasks["b"]["succeeded"] == 3 and rep.tasks["c"]["succeeded"] == 1
    rows = query_provenance(tmp_path / "repo", RUN, task=["a"], where="detector = 1")
    assert [(r["attempt"], r["state"], r["exception_type"]) for r in rows] == [
        (1, "failed", "TaskError"), (2, "succeeded", None)
    ]  # fmt: skip
    journal = Journal.for_run(tmp_path / "repo", RUN)
    scheduled = {e["cluster"]: e for e in journal.events("retry_scheduled")}
    assert sorted(scheduled) == sorted([flaky, memory])
    assert scheduled[flaky]["attempt"] == 2 and not scheduled[flaky]["memory_escalated"]
    # a[1] and b[1]; a[1]'s neighbours are not redone
    assert len(scheduled[flaky]["quanta"]) == 2
    # Each attempt has its own stdout/stderr, in its folder, named by its job_finished.
    finished = [e for e in journal.events("job_finished") if e["cluster"] == flaky]
    assert [(e["attempt"], Path(e["stdout"]).parent.name) for e in finished] == [
        (1, "attempt1"), (2, "attempt2")
    ]  # fmt: skip
    assert [Path(e["stderr"]).parent for e in finished] == [
        Path(e["stdout"]).parent for e in finished
    ]
    first, second = (Path(e["stdout"]).read_text() for e in finished)
    assert f"cluster {flaky} attempt 1:" in first and "attempt 2" not in first
    assert f"cluster {flaky} attempt 2:" in second and "attempt 1" not in second
    out = CliRunner().invoke(main, ["report", str(tmp_path / "repo"), RUN])
    assert out.exit_code == 0, out.output

    # DAGMan may run a POST script again (recovery after a DAGMan restart): it settles
    # nothing twice and gives the same verdict. An attempt the journal does not have
    # fails the node for good (2, the UNLESS-EXIT value), whatever went wrong.
    finished = len(list(journal.events("job_finished")))
    post = ["dagman-post", str(tmp_path / "repo"), RUN, flaky, "--attempt", "1"]
    again = CliRunner().invoke(
        main, [*post, "--return", "0", "--retry", "0", "--max-retries", "2", "--json"]
    )
    assert again.exit_code == 1, again.output
    assert json.loads(again.stdout)["retry"] == 2 and json.loads(again.stdout)["verdict"] == "retry"
    assert len(list(journal.events("job_finished"))) == finished
    lost = CliRunner().invoke(main, [*post, "--return", "-9", "--retry", "5", "--max-retries", "2"])
    assert lost.exit_code == 2 and "no attempt 6" in lost.stderr


def test_final_failures_run_once_and_only_the_quanta_behind_them_are_blocked(
    tmp_path: Path,
) -> None:
    # Detector 0: unusable data (TaskDataError, in retry.not_retried): final at once, the
    # node runs once. Detector 1: a TaskError every time: retried as the policy says
    # (RETRY 2), then final. Both nodes then exit 0, so step2 runs: c is blocked (it
    # needs every b), b[0] and b[1] are blocked, detector 2 succeeds.
    dag, nodes = _failing_dag(tmp_path, data_error_on=[{"detector": 0}], fail_on=[{"detector": 1}])
    codes = play_dagman(dag)
    assert codes.pop(FINAL_NODE) == 3  # rc2 aggregate --finish: some quanta failed
    assert set(codes.values()) == {0}  # every node done, step2 included
    runs = {name: node_runs(path) for name, path in nodes.items() if name != FINAL_NODE}
    assert runs == {name: 3 if name == _node(nodes, 1) else 1 for name in codes}
    assert [_a_runs(tmp_path, d) for d in (0, 1, 2)] == [1, 3, 1]
    assert [_runs(tmp_path, "b", d) for d in (0, 1, 2)] == [0, 0, 1]
    assert _runs(tmp_path, "c") == 0  # its job ran and found b[0], b[1] missing: blocked

    rep = build_report(tmp_path / "repo", RUN)
    assert rep.status == "failed"
    assert rep.tasks["a"]["failed"] == 2 and rep.tasks["a"]["retried"] == 1
    assert rep.tasks["a"]["succeeded"] == 1 and rep.tasks["b"]["succeeded"] == 1
    assert rep.tasks["b"]["blocked"] == 2 and rep.tasks["c"]["blocked"] == 1
    assert sorted(e["exception_type"] for e in rep.errors) == ["TaskDataError", "TaskError"]
    rows = query_provenance(tmp_path / "repo", RUN, task=["a"], state=["failed"], latest=True)
    assert sorted((json.loads(r["data_id"])["detector"], r["attempt"]) for r in rows) == [
        (0, 1), (1, 3)
    ]  # fmt: skip
    assert _registered(tmp_path / "repo", "b_out") == 1
    # The report points at the stderr of the attempt that failed last (attempt 3).
    (retried,) = [e for e in rep.errors if e["exception_type"] == "TaskError"]
    (example,) = retried["quanta"]
    assert example["attempt"] == 3
    assert Path(example["stderr"]) == Path(example["stdout"]).with_suffix(".err")
    assert Path(example["stderr"]).parent.name == "attempt3"
    text = CliRunner().invoke(main, ["report", str(tmp_path / "repo"), RUN])
    assert f"job stderr: {example['stderr']}" in text.output


#: The HoldReason of the node job ``failing`` holds at every start (HoldReasonCode 13).
TRANSFER_FAILURE = "Transfer input files failure at access point ap1: job.qgraph: No such file"


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> _Played:
    """One played DAG for the tests that only read its results: detector 0's job is held
    at every start for an input transfer failure nobody releases (hold_grace_seconds 0),
    detector 1's job dies every time at a[1], detector 2's dies once at b[2]."""
    tmp = tmp_path_factory.mktemp("failing")
    die_once = {"exit_on": [{"detector": 2}], "once_marker": str(tmp / "died")}
    dag, nodes = _failing_dag(
        tmp, exit_on=[{"detector": 1}], b_config=die_once, hold_grace_seconds=0
    )
    schedd = LocalScheddDouble(hold_on_start={_node(nodes, 0): (13, 2, TRANSFER_FAILURE)})
    return _Played(tmp, dag, nodes, play_dagman(dag, schedd), schedd)


def test_a_node_whose_job_dies_is_rerun_by_the_dag_retry(failing: _Played) -> None:
    # Detector 1's job dies every time at a[1] (the stand-in's os._exit(3)): the POST
    # script retries it while RETRY allows (the quanta it did not record), then exits 2,
    # the UNLESS-EXIT value: the node failed for good and its child never runs.
    # Detector 2's job dies once, at b[2], after a[2] recorded its success: its retry
    # runs b[2] only, and the node is done. (Detector 0 is held for good: a later test.)
    tmp_path, nodes, codes = failing.tmp, failing.nodes, dict(failing.codes)
    assert codes.pop(FINAL_NODE) == 3
    died, once = _node(nodes, 1), _node(nodes, 2)
    assert codes[died] == 2 and node_runs(nodes[died]) == 3 and _a_runs(tmp_path, 1) == 3
    assert codes[once] == 0 and node_runs(nodes[once]) == 2
    assert [code for name, code in codes.items() if name.startswith("step2")] == [None]
    assert (_runs(tmp_path, "a", 2), _runs(tmp_path, "b", 2)) == (1, 2)  # a[2] not redone

    journal = Journal.for_run(tmp_path / "repo", RUN)
    finished = [e for e in journal.events("job_finished") if e["cluster"] == once]
    # Attempt 1 recorded a[2] (so it did not die without a trace) but not b[2].
    assert [(e["attempt"], e["status"]["exit_code"], e["unrecorded"] != []) for e in finished] == [
        (1, 3, True), (2, 0, False)
    ]  # fmt: skip
    rep = build_report(tmp_path / "repo", RUN)
    assert rep.tasks["a"]["failed"] == 2 and rep.tasks["c"]["blocked"] == 1  # a[0] held
    assert rep.tasks["b"]["succeeded"] == 1  # b[2] by its retry (its death left no record)
    assert rep.errors and all(e["message"].startswith("job died") for e in rep.errors)
    rows = query_provenance(tmp_path / "repo", RUN, task=["a"], state=["failed"], latest=True)
    assert sorted((json.loads(r["data_id"])["detector"], r["attempt"]) for r in rows) == [
        (0, 1), (1, 3)
    ]  # fmt: skip
    # The node's submit file is set for its last attempt (3); running the POST script of
    # its first run again (recalled: retry) leaves it so.
    last = nodes[died].read_text()
    assert Path(htcondor2.Submit(last)["output"]).parent.name == "attempt3"
    again = dagman_post.settle_dag_node(
        tmp_path / "repo", RUN, died, first_attempt=1, exit_code=3, retry=0, max_retries=2
    )
    assert again.verdict is dagman_post.PostVerdict.RETRY
    assert nodes[died].read_text() == last


def test_a_node_whose_quanta_all_succeeded_is_settled_without_loading_the_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After a DAG that succeeded everywhere, one node's job_finished event is taken out
    # of the journal (as if its POST script had not run yet): settling it again must
    # write the same event and say DONE without the run-state machine (no graph load).
    dag, nodes = _failing_dag(tmp_path)
    codes = play_dagman(dag)
    assert set(codes.values()) == {0}
    journal = Journal.for_run(tmp_path / "repo", RUN)
    node = _node(nodes, 1)
    lines = journal.path.read_text().splitlines(keepends=True)
    ours = [line for line in lines if '"job_finished"' in line and f'"{node}"' in line]
    assert len(ours) == 1
    journal.path.write_text("".join(line for line in lines if line not in ours))

    def no_graph(*_args: object) -> None:
        raise AssertionError("the graph was loaded")

    monkeypatch.setattr(dagman_post, "load_dag_state", no_graph)
    settled = dagman_post.settle_dag_node(
        tmp_path / "repo", RUN, node, first_attempt=1, exit_code=0, retry=0, max_retries=2
    )
    assert settled.verdict is dagman_post.PostVerdict.DONE
    assert settled.counts == {"succeeded": 2, "failed": 0, "blocked": 0}
    assert not settled.died
    (again,) = [e for e in journal.events("job_finished") if e["cluster"] == node]
    (before,) = [json.loads(line) for line in ours]
    assert {k: v for k, v in again.items() if k != "time"} == {
        k: v for k, v in before.items() if k != "time"
    }
    # A job that exited non-zero, or a node already settled, takes the full path.
    with pytest.raises(AssertionError, match="graph was loaded"):
        dagman_post.settle_dag_node(
            tmp_path / "repo", RUN, node, first_attempt=1, exit_code=0, retry=0, max_retries=2
        )


def _node_jobs(schedd: LocalScheddDouble, node: str) -> list[list[int]]:
    """The memory each job of a node's runs was given at each start (RequestMemory)."""
    return [
        job.memory_history
        for job in schedd.jobs.values()
        if "rc2_cluster" in job.ad and job.ad.eval("rc2_cluster") == node
    ]


def test_a_node_retried_after_a_memory_error_gets_more_memory(retried: _Played) -> None:
    # a[2] needs 4096 MB: with the base 2048 it raises MemoryError. The node's POST script
    # escalates the next attempt's memory (x2) and rewrites the node's submit file, which
    # DAGMan reads again for the retry: the retry's job requests 4096 MB and sees it in
    # RC2_JOB_MEMORY_MB, so a[2] succeeds (before, the retry ran with 2048 again). The
    # retry of a[1]'s node (a TaskError) keeps its memory.
    nodes, schedd = retried.nodes, retried.schedd
    assert set(retried.codes.values()) == {0}
    node = _node(nodes, 2)
    assert _node_jobs(schedd, node) == [[2048], [4096]]
    assert _node_jobs(schedd, _node(nodes, 1)) == [[2048], [2048]]
    assert _node_jobs(schedd, _node(nodes, 0)) == [[2048]]
    journal = Journal.for_run(retried.tmp / "repo", RUN)
    scheduled = {e["cluster"]: e for e in journal.events("retry_scheduled")}
    assert (scheduled[node]["memory_mb"], scheduled[node]["memory_escalated"]) == (4096, True)
    assert scheduled[_node(nodes, 1)]["memory_mb"] == 2048
    sub = htcondor2.Submit(nodes[node].read_text())
    assert split_environment(sub["environment"])["RC2_JOB_MEMORY_MB"] == "4096"
    rows = query_provenance(retried.tmp / "repo", RUN, task=["a"], where="detector = 2")
    assert [(r["attempt"], r["state"], r["exception_type"]) for r in rows] == [
        (1, "failed", "MemoryError"), (2, "succeeded", None)
    ]  # fmt: skip
    assert build_report(retried.tmp / "repo", RUN).status == "succeeded"


@pytest.mark.parametrize("returned", [-1002, -1])  # DAGMan's value; or only the log says it
def test_a_node_removed_after_its_memory_holds_is_retried_with_more_memory(
    tmp_path: Path, returned: int
) -> None:
    # The node's job was held for memory at each of its 3 starts (its periodic_release
    # escalated it in the queue: 2048, 4096, 8192) and then removed by its
    # periodic_remove: DAGMan gives the POST script $RETURN -1002. The retry asks for
    # the next step, 2048 * 2**3, not the base again.
    dag, nodes = _failing_dag(tmp_path)
    node = _node(nodes, 1)
    journal = Journal.for_run(tmp_path / "repo", RUN)
    first = next(e for e in journal.events("job_submitted") if e["cluster"] == node)
    log = EventLogWriter(Path(first["directory"]) / f"{node}.log")
    log.submitted(9, 0, node)
    for start in range(3):
        log.executing(9, 0)
        log.held(9, 0, "rc2: memory usage exceeded request_memory", 3, 34)
        if start < 2:
            log.released(9, 0, "The job attribute PeriodicRelease expression evaluated to TRUE")
    log.aborted(9, 0, "The job attribute PeriodicRemove expression evaluated to TRUE")
    settled = dagman_post.settle_dag_node(
        tmp_path / "repo", RUN, node, first_attempt=1, exit_code=returned, retry=0, max_retries=2
    )
    assert settled.verdict is dagman_post.PostVerdict.RETRY
    assert settled.retry is not None and settled.retry.memory_mb == 16384
    (finished,) = journal.events("job_finished")
    assert finished["status"]["memory_exceeded"] is True
    assert "held for memory" in finished["status"]["reason"]
    sub = htcondor2.Submit(nodes[node].read_text())
    assert split_environment(sub["environment"])["RC2_JOB_MEMORY_MB"] == "16384"
    ad = classad2.ClassAd({"NumJobStarts": 0})
    ad["RequestMemory"] = classad2.ExprTree(sub["request_memory"])
    assert ad.eval("RequestMemory") == 16384


def test_a_node_held_for_good_leaves_the_queue_and_final_runs(failing: _Played) -> None:
    # Detector 0's job is held at every start for an input transfer failure (code 13)
    # that no operator releases. Its node's periodic_remove removes it once held for
    # hold_grace_seconds (0 here), so DAGMan runs its POST script ($RETURN -1002): the
    # node fails for good (2, not retried), its quanta fail with the hold as cause, the
    # child never runs and FINAL settles the RUN with c blocked. Before, the job stayed
    # held and the DAG, FINAL included, waited forever.
    nodes, codes = failing.nodes, dict(failing.codes)
    held = _node(nodes, 0)
    assert codes.pop(FINAL_NODE) == 3
    assert codes[held] == 2 and node_runs(nodes[held]) == 1
    assert [code for name, code in codes.items() if name.startswith("step2")] == [None]
    journal = Journal.for_run(failing.tmp / "repo", RUN)
    (finished,) = [e for e in journal.events("job_finished") if e["cluster"] == held]
    assert finished["status"]["retryable"] is False and finished["died"] is True
    assert [e for e in journal.events("retry_scheduled") if e["cluster"] == held] == []
    rep = build_report(failing.tmp / "repo", RUN)
    assert rep.status == "failed"
    # a[0], b[0] (held) and a[1], b[1] (died) failed; detector 2 succeeded; c blocked.
    assert rep.tasks["a"]["failed"] == 2 and rep.tasks["b"]["failed"] == 2
    assert rep.tasks["c"]["blocked"] == 1 and rep.tasks["a"]["succeeded"] == 1
    (error,) = [e for e in rep.errors if TRANSFER_FAILURE in e["message"]]
    assert error["count"] == 2 and error["exception_type"] == "JobDied"
    for text in ("HoldReasonCode 13 [TransferInputError]", "job removed"):
        assert text in error["message"]
    assert sorted(q["data_id"]["detector"] for q in error["quanta"]) == [0, 0]


class _Killed(BaseException):
    """The POST script's process killed (SIGKILL) at that point."""


@pytest.mark.parametrize("rerun", ["same_retry", "next_retry"])
def test_a_post_script_killed_before_journaling_the_retry_settles_when_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rerun: str
) -> None:
    # a[1] fails once (retriable). The node's POST script settles attempt 1 (job_finished),
    # writes attempt 2's job graph and journals retry_scheduled, and is killed before it
    # journals job_submitted of attempt 2. DAGMan then either runs the script again for
    # the same run (recovery: $RETRY 0) or counts the node as failed and reruns it
    # ($RETRY 1: the job finds attempt 2's job graph and runs it). Either way the script
    # must settle correctly: not "done" with a[1] failed, not "no attempt 2".
    nodes, node, sub = _node_failing_once_after_its_first_run(tmp_path)
    repo = tmp_path / "repo"
    journal = Journal.for_run(repo, RUN)

    def killed(*_args: object) -> None:
        raise _Killed

    with monkeypatch.context() as patch:
        patch.setattr(dagman_post.RunState, "submitted", killed)
        with pytest.raises(_Killed):
            dagman_post.settle_dag_node(
                repo, RUN, node, first_attempt=1, exit_code=0, retry=0, max_retries=2
            )
    first = next(e for e in journal.events("job_submitted") if e["cluster"] == node)
    folders = Path(first["directory"]).parent
    assert (folders / "attempt2" / "job.qgraph").exists()  # prepared, not journaled

    def post(retry: int) -> dagman_post.NodeSettlement:
        return dagman_post.settle_dag_node(
            repo, RUN, node, first_attempt=1, exit_code=0, retry=retry, max_retries=2
        )

    if rerun == "same_retry":
        settled = post(0)
        assert settled.verdict is dagman_post.PostVerdict.RETRY
        assert settled.retry is not None and settled.retry.attempt == 2
        assert post(0).verdict is dagman_post.PostVerdict.RETRY  # and again: same verdict
        rerun_sub = htcondor2.Submit(nodes[node].read_text())
        assert Path(rerun_sub["output"]).parent.name == "attempt2"
    else:
        command = _command(htcondor2.Submit(nodes[node].read_text()), retry=1)
        subprocess.run(command, check=True, capture_output=True)  # runs attempt 2
        settled = post(1)
        assert settled.verdict is dagman_post.PostVerdict.DONE
        assert (settled.attempt, settled.counts["succeeded"]) == (2, 2)
    ours = [e for e in journal.events() if e.get("cluster") == node]
    submitted = [e["attempt"] for e in ours if e["event"] == "job_submitted"]
    finished = [e["attempt"] for e in ours if e["event"] == "job_finished"]
    assert submitted == [1, 2]
    assert finished == ([1] if rerun == "same_retry" else [1, 2])
    rows = query_provenance(repo, RUN, task=["a"], where="detector = 1")
    states = [(r["attempt"], r["state"]) for r in rows]
    assert states == (
        [(1, "failed")] if rerun == "same_retry" else [(1, "failed"), (2, "succeeded")]
    )


@pytest.mark.parametrize("ran", [True, False])
def test_final_settles_a_dag_retry_its_post_script_did_not_settle(
    tmp_path: Path, ran: bool
) -> None:
    # a[1] fails once; the node's POST script prepares attempt 2 (RETRY). Attempt 2's job
    # (the node's run 1, logged to the node's one event log) then dies, or never runs,
    # and no POST script settles it. FINAL reads run 1's job from the node's log: a job
    # that died fails its quanta (JobDied, attempt 2); one that never ran leaves attempt
    # 2 unsettled (a[1] keeps its attempt-1 failure).
    nodes, node, sub = _node_failing_once_after_its_first_run(tmp_path)
    log = EventLogWriter(Path(sub["log"]))
    log.submitted(5, 0, node)
    log.executing(5, 0)
    log.terminated(5, 0, 0)
    repo = tmp_path / "repo"
    settled = dagman_post.settle_dag_node(
        repo, RUN, node, first_attempt=1, exit_code=0, retry=0, max_retries=2
    )
    assert settled.verdict is dagman_post.PostVerdict.RETRY
    if ran:
        log.submitted(6, 0, node)
        log.executing(6, 0)
        log.terminated(6, 0, 3)
    register_results(repo, RUN)
    journal = Journal.for_run(repo, RUN)
    finished = [e for e in journal.events("job_finished") if e["cluster"] == node]
    assert [(e["attempt"], e["status"]["exit_code"], e["died"]) for e in finished] == (
        [(1, 0, False), (2, 3, True)] if ran else [(1, 0, False)]
    )
    rows = query_provenance(repo, RUN, task=["a"], where="detector = 1", latest=True)
    assert [(r["attempt"], r["state"], r["exception_type"]) for r in rows] == [
        (2, "failed", "JobDied") if ran else (1, "failed", "TaskError")
    ]
