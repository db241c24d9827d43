"""Kubernetes Jobs killed for memory: the Job fails at the first OOMKilled pod, the backend
reports it ``memory_exceeded`` from the pod's container state, and the run-state
machine's retry is a new Job requesting (and limited to) the escalated memory.

Against the API double (``k8s_double.py``): every Job is validated by kubernetes_validate
(strict) and read into the official client's ``V1Job``; pods are ``V1Pod`` objects; the
fake one-node cluster applies the Job's ``podFailurePolicy`` and ``backoffLimit`` as the
Job controller does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes  # type: ignore[import-untyped]
from click.testing import CliRunner

from rc2_platform.cli import main as cli
from rc2_platform.execution.backends import JobState
from rc2_platform.execution.backends.kubernetes import KubernetesBackend, build_job_manifest
from rc2_platform.execution.backends.kubernetes_failures import (
    container_ends,
    pod_failure_rules,
)
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.report import build_report
from rc2_platform_tests.execution.helpers import RUN, make_config
from rc2_platform_tests.execution.k8s_double import (
    SETTINGS,
    FakeBatchApi,
    FakeCluster,
    cluster_job,
    ended_pod,
    fake_cluster,
    job_id,
    job_name,
    pod_failure_action,
    run_on_cluster,
)

m = kubernetes.client
OOM_CLUSTER = "step1_HSC_1"


def _failed(reason: str, message: str, failed: int = 1) -> dict[str, Any]:
    return {
        "failed": failed,
        "conditions": [{"type": "Failed", "status": "True", "reason": reason, "message": message}],
    }


def test_the_job_fails_at_the_first_pod_killed_by_sigkill_and_ignores_disruptions() -> None:
    manifest = build_job_manifest(cluster_job(retries=3), SETTINGS)
    rules = manifest["spec"]["podFailurePolicy"]["rules"]
    assert rules == pod_failure_rules("rc2")
    template = manifest["spec"]["template"]
    oom = ended_pod("j", "j-0", template, 137, "OOMKilled")
    oom.metadata.namespace = "rc2-prod"
    assert pod_failure_action(rules, oom) == (
        "FailJob",
        "Container rc2 for pod rc2-prod/j-0 failed with exit code 137 matching FailJob "
        "rule at index 1",
    )
    assert pod_failure_action(rules, ended_pod("j", "j-1", template, 1, "Error"))[0] == "Count"
    drained = ended_pod("j", "j-2", template, 137, None)
    drained.status.conditions = [m.V1PodCondition(type="DisruptionTarget", status="True")]
    assert pod_failure_action(rules, drained)[0] == "Ignore"  # a drain is not a failure


def test_a_failed_job_whose_pod_was_oomkilled_is_memory_exceeded_naming_pod_and_limit() -> None:
    batch, core, clock, backend = fake_cluster()
    handles = backend.submit([cluster_job("a"), cluster_job("b")])
    template = batch.jobs[("rc2-prod", job_name("a"))]["spec"]["template"]
    policy = (
        f"Container rc2 for pod rc2-prod/{job_name('a')}-0 failed with exit code 137 "
        "matching FailJob rule at index 1"
    )
    batch.jobs[("rc2-prod", job_name("a"))]["status"] = _failed("PodFailurePolicy", policy)
    batch.jobs[("rc2-prod", job_name("b"))]["status"] = _failed(
        "BackoffLimitExceeded", "Job has reached the specified backoff limit", failed=3
    )
    core.pods["rc2-prod"] = [
        ended_pod(job_name("a"), f"{job_name('a')}-0", template, 137, "OOMKilled"),
        *(ended_pod(job_name("b"), f"{job_name('b')}-{n}", template, 1, "Error") for n in (0, 1)),
    ]
    statuses = backend.status(handles)
    oom, error = statuses[job_id("a")], statuses[job_id("b")]
    assert oom.state is JobState.FAILED and oom.memory_exceeded and oom.exit_code == 137
    assert oom.reason == (
        f"cluster job a (Kubernetes Job {job_id('a')}, pod {job_name('a')}-0) killed for "
        "memory: container rc2 OOMKilled (exit code 137) at its memory limit 6144Mi "
        "(request 4096Mi)"
    )
    assert oom.to_dict()["memory_exceeded"] is True  # journaled with job_finished
    assert not error.memory_exceeded and error.exit_code == 1 and error.attempts == 3
    assert error.reason == (
        f"cluster job b (Kubernetes Job {job_id('b')}, pod {job_name('b')}-1) failed: "
        "container rc2 exited with code 1: Error (BackoffLimitExceeded: Job has reached "
        "the specified backoff limit)"
    )
    lists = core.lists
    clock.now = 100.0
    assert backend.status(handles) == statuses
    assert core.lists == lists  # a failed Job's pods are read once


def test_without_pods_the_exit_code_of_the_failjob_rule_still_counts() -> None:
    batch = FakeBatchApi()
    backend = KubernetesBackend(batch, SETTINGS)  # no CoreV1Api: pods are never read
    (handle,) = backend.submit([cluster_job("a")])
    policy = "Container rc2 for pod rc2-prod/p failed with exit code 137 matching FailJob rule"
    batch.jobs[("rc2-prod", job_name("a"))]["status"] = _failed("PodFailurePolicy", policy)
    status = backend.status([handle])[handle.id]
    assert status.exit_code == 137 and not status.memory_exceeded  # SIGKILL: memory anyway


def test_an_oomkilled_restart_in_last_state_and_unreadable_pods() -> None:
    status = m.V1ContainerStatus(
        name="rc2", image="i", image_id="", ready=True, restart_count=1,
        state=m.V1ContainerState(running=m.V1ContainerStateRunning()),
        last_state=m.V1ContainerState(
            terminated=m.V1ContainerStateTerminated(exit_code=137, reason="OOMKilled")
        ),
    )  # fmt: skip
    restarted = m.V1Pod(
        metadata=m.V1ObjectMeta(name="p"),
        status=m.V1PodStatus(phase="Running", container_statuses=[status]),
    )
    (end,) = container_ends(restarted)
    assert end.oom_killed and end.describe() == "container rc2 OOMKilled (exit code 137)"

    batch, core, clock, backend = fake_cluster()
    (handle,) = backend.submit([cluster_job("a")])
    batch.jobs[("rc2-prod", job_name("a"))]["status"] = _failed("BackoffLimitExceeded", "limit")

    def refuse(**kwargs: Any) -> Any:
        raise RuntimeError("pods is forbidden")

    core.list_namespaced_pod = refuse  # type: ignore[assignment, method-assign]
    failed = backend.status([handle])[handle.id]
    assert failed.state is JobState.FAILED and not failed.memory_exceeded
    assert failed.reason == (
        f"cluster job a (Kubernetes Job {job_id('a')}) failed: BackoffLimitExceeded: limit "
        "(its pods could not be read: pods is forbidden)"
    )


def _requests(cluster: FakeCluster, name: str) -> list[tuple[str, str, str]]:
    """(request, limit, RC2_JOB_MEMORY_MB) of each Job created for the cluster job ``name``."""
    out = []
    for call, args in cluster.calls:
        body = args.get("body")
        if call != "create" or body["metadata"]["annotations"]["rc2/cluster-name"] != name:
            continue
        (container,) = body["spec"]["template"]["spec"]["containers"]
        resources = container["resources"]
        env = {e["name"]: e["value"] for e in container["env"]}
        out.append(
            (
                resources["requests"]["memory"],
                resources["limits"]["memory"],
                env["RC2_JOB_MEMORY_MB"],
            )
        )
    return out


def _run(tmp_path: Path, needs_mb: int, **retry: Any) -> tuple[Any, FakeCluster]:
    cluster = FakeCluster(memory_mb=65536, needs_mb={OOM_CLUSTER: needs_mb})
    return run_on_cluster(tmp_path, cluster, config=make_config(**retry)), cluster


def test_a_cluster_oomkilled_once_is_retried_as_a_job_with_twice_the_memory(
    tmp_path: Path,
) -> None:
    # 2048 MiB requested, limit 3072Mi (memory_limit_factor 1.5): the job needs 5000.
    summary, cluster = _run(tmp_path, 5000, retries=2)
    assert summary.status == "succeeded" and summary.counts["succeeded"] == 7
    assert _requests(cluster, OOM_CLUSTER) == [
        ("2048Mi", "3072Mi", "2048"),
        ("4096Mi", "6144Mi", "4096"),
    ]
    assert _requests(cluster, "step1_HSC_0") == [("2048Mi", "3072Mi", "2048")]
    first = next(n for (_ns, n) in cluster.jobs if n.startswith("rc2-step1-hsc-1-"))
    pods = [p.metadata.name for p in cluster.core.pods["rc2-prod"]]
    assert [p for p in pods if p.startswith(first)] == [f"{first}-0"]  # no same-memory pod

    journal = Journal.for_run(tmp_path / "repo", RUN)
    (killed,) = [e for e in journal.events("job_finished") if e["status"].get("memory_exceeded")]
    assert (killed["cluster"], killed["attempt"], killed["status"]["exit_code"]) == (
        OOM_CLUSTER, 1, 137,
    )  # fmt: skip
    assert re.search(r"killed for memory: container rc2 OOMKilled \(exit code 137\) at its "
                     r"memory limit 3072Mi \(request 2048Mi\)", killed["status"]["reason"])  # fmt: skip
    (retry,) = journal.events("retry_scheduled")
    assert (retry["attempt"], retry["memory_mb"], retry["memory_escalated"]) == (2, 4096, True)

    report = build_report(tmp_path / "repo", RUN)
    (line,) = report.memory_retries
    assert (line["cluster"], line["attempt"], line["memory_mb"]) == (OOM_CLUSTER, 1, 2048)
    assert (line["retry_attempt"], line["retry_memory_mb"]) == (2, 4096)
    text = CliRunner().invoke(cli, ["report", str(tmp_path / "repo"), RUN])
    assert text.exit_code == 0, text.output
    assert (
        f"{OOM_CLUSTER} attempt 1 (2048 MiB) killed for memory: cluster job {OOM_CLUSTER} "
        f"(Kubernetes Job rc2-prod/{first}, pod {first}-0) killed for memory"
    ) in text.output
    assert "-> attempt 2 requests 4096 MiB" in text.output
    as_json = CliRunner().invoke(cli, ["report", str(tmp_path / "repo"), RUN, "--json"])
    assert json.loads(as_json.output)["memory_retries"][0]["retry_memory_mb"] == 4096


def test_a_cluster_oomkilled_at_the_memory_cap_fails_naming_task_data_id_and_memory(
    tmp_path: Path,
) -> None:
    summary, cluster = _run(tmp_path, 50000, retries=2, max_memory_mb=4096)
    assert summary.status == "failed"
    assert (summary.counts["failed"], summary.counts["blocked"]) == (2, 1)
    # Killed at the cap (4096): not retried with the same memory again.
    assert [r[0] for r in _requests(cluster, OOM_CLUSTER)] == ["2048Mi", "4096Mi"]
    report = build_report(tmp_path / "repo", RUN)
    (error,) = report.errors
    assert error["tasks"] == ["a", "b"] and error["count"] == 2
    assert {json.dumps(q["data_id"], sort_keys=True) for q in error["quanta"]} == {
        '{"detector": 1, "instrument": "HSC"}'
    }
    assert {q["attempt"] for q in error["quanta"]} == {2}
    assert error["message"].startswith(
        f"job died before recording this quantum (cluster job {OOM_CLUSTER} (Kubernetes Job "
    )
    assert error["message"].endswith(
        "killed for memory: container rc2 OOMKilled (exit code 137) at its memory limit "
        "6144Mi (request 4096Mi))"
    )
    assert [e["memory_mb"] for e in Journal.for_run(tmp_path / "repo", RUN).events(
        "retry_scheduled")] == [4096]  # fmt: skip
