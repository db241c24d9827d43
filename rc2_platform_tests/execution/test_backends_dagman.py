"""Whole-graph submission as one DAGMan workflow: DAG + node submit files, re-read by htcondor2."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import classad2
import htcondor2
import pytest

from rc2_platform.errors import JobSubmissionError
from rc2_platform.execution.backends import ClusterJob, JobState
from rc2_platform.execution.backends.htcondor import (
    HTCondorBackend,
    LocalScheddDouble,
    build_submit_description,
    write_dag,
)
from rc2_platform.execution.execution_config import HTCondorSettings
from rc2_platform_tests.execution.dagman_player import (
    Retry,
    node_runs,
    parse_dag,
    parse_retry,
    parse_script,
    parse_vars,
    play_dagman,
    read_dag,
)


def _jobs(tmp_path: Path) -> list[ClusterJob]:
    def job(name: str, retries: int = 0) -> ClusterJob:
        return ClusterJob(
            name,
            [sys.executable, "-c", "pass"],
            2048,
            1,
            labels={"step": name.split("-")[0]},
            working_dir=tmp_path,
            log_dir=tmp_path / "logs",
            max_retries=retries,
        )

    return [
        job("step1-visit-1"),
        job("step1-visit-2"),
        job("step2-patch-0", 2),
        job("step3-patch-0"),
    ]


DEPS = {"step2-patch-0": {"step1-visit-1", "step1-visit-2"}, "step3-patch-0": {"step2-patch-0"}}


@pytest.fixture
def fake_dagman(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in ``condor_dagman`` on PATH: ``Submit.from_dag`` only needs it to exist."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "condor_dagman"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    return exe


def test_dag_file_has_job_vars_retry_and_parent_child_lines(tmp_path: Path) -> None:
    dag = write_dag(_jobs(tmp_path), DEPS, tmp_path / "dag")
    lines = dag.read_text().splitlines()
    jobs = [line.split()[1] for line in lines if line.startswith("JOB ")]
    assert jobs.index("step2-patch-0") > jobs.index("step1-visit-2")  # topological order
    assert sorted(jobs) == sorted(j.name for j in _jobs(tmp_path))
    assert 'VARS step1-visit-1 rc2_node="step1-visit-1" rc2_retry="$(RETRY)"' in lines
    assert not any(line.startswith("SCRIPT") for line in lines)  # none asked for
    assert "RETRY step2-patch-0 2" in lines
    assert not any(line.startswith("RETRY step1") for line in lines)
    assert "PARENT step1-visit-1 step1-visit-2 CHILD step2-patch-0" in lines
    assert "PARENT step2-patch-0 CHILD step3-patch-0" in lines


def test_node_submit_files_are_reread_by_htcondor_submit(tmp_path: Path) -> None:
    dag = write_dag(_jobs(tmp_path), DEPS, tmp_path / "dag")
    sub = htcondor2.Submit((dag.parent / "jobs" / "step2-patch-0.sub").read_text())
    assert sub["request_memory"].startswith("int(min({ifThenElse(isUndefined(MemoryUsage), 2048")
    assert sub["request_cpus"] == "1"
    assert sub["My.rc2_dag_node"] == '"$(rc2_node)"'
    assert "max_retries" not in sub  # the DAG's RETRY does exit-code retries
    assert "NumJobStarts <= 2" in sub["periodic_release"]  # memory retries stay in the queue


def test_dag_is_accepted_by_submit_from_dag(tmp_path: Path, fake_dagman: Path) -> None:
    dag = write_dag(_jobs(tmp_path), DEPS, tmp_path / "dag")
    description = htcondor2.Submit.from_dag(str(dag), {})
    assert description["universe"] == "scheduler"
    assert Path(description["executable"]) == fake_dagman
    assert f"-Dag {dag}" in description["arguments"]


def test_from_dag_rejects_a_malformed_dag(tmp_path: Path, fake_dagman: Path) -> None:
    bad = tmp_path / "bad.dag"
    bad.write_text("JOB a a.sub\nBOGUS line\n")
    with pytest.raises(htcondor2.HTCondorException, match="BOGUS"):
        htcondor2.Submit.from_dag(str(bad), {})


def test_submit_dag_runs_dagman_job_on_schedd_double(tmp_path: Path, fake_dagman: Path) -> None:
    jobs = _jobs(tmp_path)
    backend = HTCondorBackend(LocalScheddDouble())
    handle = backend.submit_dag(jobs, DEPS, tmp_path / "dag", dag_name="tract9615")
    assert handle.info["dag"].endswith("tract9615.dag")
    # The stand-in condor_dagman exits 0 at once: this proves the submission path only.
    assert backend.wait([handle], poll_seconds=0.05)[handle.id].state is JobState.SUCCEEDED
    # No real DAGMan ran the nodes: they have no events and read as PENDING.
    assert {s.state for s in backend.dag_node_status(jobs).values()} == {JobState.PENDING}
    assert (tmp_path / "dag" / "tract9615.dag.condor.sub").exists()


def test_bad_dependencies_are_rejected(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path)
    with pytest.raises(JobSubmissionError, match="unknown job"):
        write_dag(jobs, {"step2-patch-0": {"step9-x"}}, tmp_path / "d1")
    with pytest.raises(JobSubmissionError, match="cycle"):
        write_dag(
            jobs,
            {"step1-visit-1": {"step2-patch-0"}, "step2-patch-0": {"step1-visit-1"}},
            tmp_path / "d2",
        )
    with pytest.raises(JobSubmissionError, match="Duplicate"):
        write_dag([*jobs, jobs[0]], {}, tmp_path / "d3")


def test_submit_dag_without_condor_dagman_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    backend = HTCondorBackend(LocalScheddDouble())
    with pytest.raises(JobSubmissionError, match="condor_dagman"):
        backend.submit_dag(_jobs(tmp_path), DEPS, tmp_path / "dag")


def test_player_retries_failed_nodes_unless_they_exit_with_the_unless_exit_value(
    tmp_path: Path, fake_dagman: Path
) -> None:
    def job(name: str, code: int) -> ClusterJob:
        return ClusterJob(
            name, [sys.executable, "-c", f"import sys; sys.exit({code})"], 100, 1,
            working_dir=tmp_path, log_dir=tmp_path / "logs", max_retries=2,
        )  # fmt: skip

    jobs = [job("no-retry", 5), job("flaky", 1), job("child", 0)]
    dag = write_dag(jobs, {"child": {"flaky"}}, tmp_path / "dag")
    text = dag.read_text().replace("RETRY no-retry 2", "RETRY no-retry 2 UNLESS-EXIT 5")
    dag.write_text(text)
    assert "RETRY no-retry 2 UNLESS-EXIT 5" in text.splitlines()
    htcondor2.Submit.from_dag(str(dag), {})  # accepted (it does not check RETRY's arguments,
    with pytest.raises(ValueError, match="cannot read"):  # the player does)
        parse_retry(["RETRY", "no-retry", "2", "UNLESS-EXIT"])

    nodes, _parents, retries, _final = parse_dag(dag)
    assert retries["no-retry"] == Retry(2, 5) and retries["flaky"] == Retry(2)
    assert play_dagman(dag) == {"no-retry": 5, "flaky": 1, "child": None}
    # DAGMan's rule: no retry when the exit code is the UNLESS-EXIT value; otherwise
    # 1 + RETRY runs; children of a failed node never run.
    assert {name: node_runs(path) for name, path in nodes.items()} == {
        "no-retry": 1, "flaky": 3, "child": 0
    }  # fmt: skip


def test_post_scripts_and_unless_exit_are_written_and_accepted_by_from_dag(
    tmp_path: Path, fake_dagman: Path
) -> None:
    post = {"step2-patch-0": ["/opt/rc2/bin/rc2", "dagman-post", "$RETURN", "$RETRY"]}
    dag = write_dag(_jobs(tmp_path), DEPS, tmp_path / "dag", post_scripts=post, retry_unless_exit=2)
    lines = dag.read_text().splitlines()
    assert "SCRIPT POST step2-patch-0 /opt/rc2/bin/rc2 dagman-post $RETURN $RETRY" in lines
    assert "RETRY step2-patch-0 2 UNLESS-EXIT 2" in lines
    htcondor2.Submit.from_dag(str(dag), {})  # condor_submit_dag's own checks accept it
    parsed = read_dag(dag)
    assert parsed.post == post and parsed.retries["step2-patch-0"] == Retry(2, 2)
    assert parsed.variables["step1-visit-1"] == {
        "rc2_node": "step1-visit-1",
        "rc2_retry": "$(RETRY)",
    }
    with pytest.raises(JobSubmissionError, match="white space"):
        write_dag(_jobs(tmp_path), DEPS, tmp_path / "d1", post_scripts={"step1-visit-1": ["a b"]})
    with pytest.raises(JobSubmissionError, match="unknown DAG node"):
        write_dag(_jobs(tmp_path), DEPS, tmp_path / "d2", post_scripts={"nope": ["x"]})


def test_player_reads_vars_and_script_lines_as_dagman_documents_them() -> None:
    assert parse_vars('VARS a rc2_node="a" x="say \\"hi\\""') == (
        "a",
        {"rc2_node": "a", "x": 'say "hi"'},
    )
    assert parse_vars('VARS a APPEND x="1"') == ("a", {"x": "1"})
    with pytest.raises(ValueError, match="cannot read"):
        parse_vars("VARS a x=1")
    assert parse_script(["SCRIPT", "DEFER", "4", "30", "POST", "a", "post.sh", "$RETURN"]) == (
        "POST", "a", ["post.sh", "$RETURN"]
    )  # fmt: skip
    assert parse_script(["SCRIPT", "DEBUG", "f.txt", "ALL", "PRE", "a", "pre.sh"])[0] == "PRE"


def test_player_runs_post_scripts_whose_exit_is_the_nodes_and_retries_job_and_script(
    tmp_path: Path, fake_dagman: Path
) -> None:
    # The job records the $(RETRY) it got through VARS; the POST script records its
    # macros and says: "flaky" fails until its second retry, "masked" succeeds although
    # its job exited 7, "stop" fails with the UNLESS-EXIT value (no retry).
    seen = tmp_path / "seen.txt"
    script = tmp_path / "post.py"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "node, ret, retry, max_retries = sys.argv[1:5]\n"
        f"open({str(seen)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "if node == 'flaky':\n    sys.exit(0 if int(retry) >= 2 else 1)\n"
        "sys.exit({'masked': 0, 'stop': 2}.get(node, int(ret)))\n"
    )
    script.chmod(0o755)

    def job(name: str, code: int) -> ClusterJob:
        record = f"open({str(seen)!r}, 'a').write('job {name} ' + sys.argv[1] + '\\n')"
        return ClusterJob(
            name, [sys.executable, "-c", f"import sys; {record}; sys.exit({code})", "$(rc2_retry)"],
            100, 1, working_dir=tmp_path, log_dir=tmp_path / "logs", max_retries=2,
        )  # fmt: skip

    jobs = [job("flaky", 0), job("masked", 7), job("stop", 0), job("child", 0), job("orphan", 0)]
    post = {
        n: [str(script), n, "$RETURN", "$RETRY", "$MAX_RETRIES"]
        for n in ("flaky", "masked", "stop")
    }
    deps = {"child": {"flaky", "masked"}, "orphan": {"stop"}}
    dag = write_dag(jobs, deps, tmp_path / "dag", post_scripts=post, retry_unless_exit=2)
    htcondor2.Submit.from_dag(str(dag), {})
    nodes, _parents, _retries, _final = parse_dag(dag)
    assert play_dagman(dag) == {"flaky": 0, "masked": 0, "stop": 2, "child": 0, "orphan": None}
    assert {name: node_runs(path) for name, path in nodes.items()} == {
        "flaky": 3, "masked": 1, "stop": 1, "child": 1, "orphan": 0
    }  # fmt: skip
    lines = seen.read_text().splitlines()
    assert [line for line in lines if "flaky" in line] == [
        "job flaky 0", "flaky 0 0 2", "job flaky 1", "flaky 0 1 2", "job flaky 2", "flaky 0 2 2",
    ]  # fmt: skip
    assert "masked 7 0 2" in lines and "job child 0" in lines


def _removes(sub: htcondor2.Submit, **ad: object) -> bool:
    """What the submit file's periodic_remove says of a job ad (evaluated by classad2)."""
    job = classad2.ClassAd({"NumJobStarts": 1, **ad})
    job["PeriodicRemove"] = classad2.ExprTree(sub["periodic_remove"])
    return job.eval("PeriodicRemove") is True


def test_dag_nodes_held_for_good_are_removed_after_the_grace(tmp_path: Path) -> None:
    settings = HTCondorSettings(hold_grace_seconds=600)
    dag = write_dag(_jobs(tmp_path), DEPS, tmp_path / "dag", settings)
    sub = htcondor2.Submit((dag.parent / "jobs" / "step2-patch-0.sub").read_text())
    now = int(time.time())
    held = {"JobStatus": 5, "HoldReasonSubCode": 2}
    assert _removes(sub, **held, HoldReasonCode=13, EnteredCurrentStatus=now - 700)
    assert not _removes(sub, **held, HoldReasonCode=13, EnteredCurrentStatus=now - 10)
    assert not _removes(sub, **held, HoldReasonCode=16, EnteredCurrentStatus=now - 700)
    assert not _removes(sub, JobStatus=2, HoldReasonCode=13, EnteredCurrentStatus=now - 700)
    # Memory holds keep their own rule: removed once NumJobStarts > max_retries (2).
    memory = {"JobStatus": 5, "HoldReasonCode": 3, "HoldReasonSubCode": 34}
    assert not _removes(sub, **memory, EnteredCurrentStatus=now - 700)
    assert _removes(sub, **memory, EnteredCurrentStatus=now, NumJobStarts=3)
    # Jobs an orchestrator watches (not DAG nodes), and a grace of null: no time rule.
    job = _jobs(tmp_path)[2]
    plain = build_submit_description(job, settings)
    assert not _removes(plain, **held, HoldReasonCode=13, EnteredCurrentStatus=now - 700)
    forever = HTCondorSettings(hold_grace_seconds=None)
    node = build_submit_description(job, forever, dag_node=True)
    assert not _removes(node, **held, HoldReasonCode=13, EnteredCurrentStatus=now - 700)
