"""Kubernetes backend: manifests validated offline in strict mode, API calls against a fake client."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from rc2_platform.butler import Butler
from rc2_platform.errors import ConfigError, JobSubmissionError
from rc2_platform.execution.backends import JobState, JobStatus
from rc2_platform.execution.backends.kubernetes import (
    LIST_FROM,
    KubernetesBackend,
    build_job_manifest,
    job_object_name,
    kubernetes_name,
    validate_manifest,
)
from rc2_platform.execution.execution_config import ResourceRequest, ResourcesConfig
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.report import build_report
from rc2_platform.execution.runner import restart_run
from rc2_platform_tests.execution.helpers import RUN, make_config
from rc2_platform_tests.execution.k8s_double import (
    SETTINGS,
    FakeBatchApi,
    FakeCluster,
    run_on_cluster,
)
from rc2_platform_tests.execution.k8s_double import cluster_job as _job
from rc2_platform_tests.execution.k8s_double import fake_cluster as _cluster
from rc2_platform_tests.execution.k8s_double import job_id as _id
from rc2_platform_tests.execution.k8s_double import job_name as _name
from rc2_platform_tests.execution.k8s_double import pod as _pod


@pytest.mark.parametrize("version", ["1.30", "1.37"])
def test_manifests_validate_strictly_against_the_schema(version: str) -> None:
    for job in (_job(), _job("step2-patch-" + "x" * 80, 0)):
        validate_manifest(build_job_manifest(job, SETTINGS), version)
        validate_manifest(build_job_manifest(job), version)  # defaults too


def test_schema_validation_catches_unknown_fields() -> None:
    manifest = build_job_manifest(_job(), SETTINGS)
    manifest["spec"]["template"]["spec"]["containers"][0]["memory"] = "4Gi"
    with pytest.raises(ConfigError, match="memory"):
        validate_manifest(manifest)


def test_manifest_carries_image_command_resources_labels_and_volume() -> None:
    manifest = build_job_manifest(_job(), SETTINGS)
    meta, spec = manifest["metadata"], manifest["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert meta["namespace"] == "rc2-prod"
    assert re.fullmatch(r"rc2-step1-visit-1228-[0-9a-f]{8}", meta["name"])
    assert meta["labels"]["app.kubernetes.io/name"] == "rc2-platform"
    assert meta["labels"]["rc2/cluster"] == "step1-visit-1228"
    assert meta["labels"]["rc2/run"] == "HSC-runs-RC2-2025-01"
    assert spec["template"]["metadata"]["labels"] == meta["labels"]
    assert spec["backoffLimit"] == 2
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "rc2-runner" and pod["nodeSelector"] == {"pool": "batch"}
    assert container["image"] == "registry.example.org/rc2-platform:0.1.0"
    assert container["command"][:2] == ["rc2", "run-cluster"]
    assert container["resources"] == {
        "requests": {"memory": "4096Mi", "cpu": "2"},
        "limits": {"memory": "6144Mi"},
    }
    assert container["env"] == [{"name": "RC2_LOG_LEVEL", "value": "INFO"}]
    assert container["volumeMounts"][0]["mountPath"] == "/repo"
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "rc2-repo"


def test_long_names_become_unique_dns_labels() -> None:
    a, b = kubernetes_name("Step2_" + "a" * 80 + "1"), kubernetes_name("Step2_" + "a" * 80 + "2")
    assert a != b and len(a) <= 63 and a == a.lower()
    assert len(job_object_name(_job("Step2_" + "a" * 80))) <= 63


def test_each_attempt_and_run_gets_its_own_job_name() -> None:
    first = _job("step1-visit-1228")
    retry = dataclasses.replace(first, working_dir=Path("/repo/_runs/r/jobs/c/attempt2"))
    assert job_object_name(first) == job_object_name(_job("step1-visit-1228"))
    assert job_object_name(first) != job_object_name(retry)
    assert job_object_name(first) != job_object_name(_job("step1-visit-1229"))


def test_submit_status_cancel_against_fake_api() -> None:
    api = FakeBatchApi()
    backend = KubernetesBackend(api, SETTINGS)
    handles = backend.submit([_job("a"), _job("b"), _job("c"), _job("d")])
    assert [c[0] for c in api.calls] == ["create"] * 4
    assert handles[0].id == _id("a")
    validate_manifest(api.calls[0][1]["body"])
    assert {s.state for s in backend.status(handles).values()} == {JobState.PENDING}

    api.jobs[("rc2-prod", _name("a"))]["status"] = {
        "succeeded": 1,
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    api.jobs[("rc2-prod", _name("b"))]["status"] = {
        "failed": 3,
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            }
        ],
    }
    api.jobs[("rc2-prod", _name("c"))]["status"] = {"active": 1}
    backend.cancel([handles[3]])
    assert api.calls[-1] == (
        "delete",
        {"name": _name("d"), "namespace": "rc2-prod", "policy": "Foreground"},
    )
    statuses = backend.status(handles)
    assert statuses[_id("a")].state is JobState.SUCCEEDED
    failed = statuses[_id("b")]
    assert failed.state is JobState.FAILED and "BackoffLimitExceeded" in (failed.reason or "")
    assert failed.attempts == 3
    assert statuses[_id("c")].state is JobState.RUNNING
    assert statuses[_id("d")].state is JobState.REMOVED


def test_existing_job_name_gives_clear_error() -> None:
    api = FakeBatchApi()
    backend = KubernetesBackend(api, SETTINGS)
    backend.submit([_job("a")])
    with pytest.raises(JobSubmissionError, match="exists"):
        backend.submit([_job("a")])


# --- Pods that can never start -------------------------------------------------------


def test_image_pull_backoff_fails_naming_pod_and_reason_and_deletes_the_job() -> None:
    batch, core, clock, backend = _cluster()
    handles = backend.submit([_job("a"), _job("b")])
    for name in (_name("a"), _name("b")):
        batch.jobs[("rc2-prod", name)]["status"] = {"active": 1}
    image = "registry.example.org/rc2-platform:0.1.O"
    pull = f'Back-off pulling image "{image}"'
    core.pods["rc2-prod"] = [
        _pod(_name("a"), "rc2-a-x7k2p", waiting=("ErrImagePull", f"failed to pull {image}:\nnot found")),
        _pod(_name("b"), "rc2-b-q9w4z", phase="Running"),
    ]  # fmt: skip
    statuses = backend.status(handles)
    assert statuses[_id("a")].state is JobState.PENDING  # a pull may fail once
    assert statuses[_id("b")].state is JobState.RUNNING
    clock.now = 120.0
    core.pods["rc2-prod"][0] = _pod(_name("a"), "rc2-a-x7k2p", waiting=("ImagePullBackOff", pull))
    assert backend.status(handles)[_id("a")].state is JobState.PENDING
    assert core.lists == 2  # one list per namespace and status() call, not one per job
    clock.now = 305.0
    failed = backend.status(handles)[_id("a")]
    assert failed.state is JobState.FAILED and not failed.retryable
    assert failed.reason == (
        f"cluster job a (Kubernetes Job {_id('a')}, pod rc2-a-x7k2p) cannot start: "
        f"ImagePullBackOff: {pull} (for 305 s); Job deleted"
    )
    assert ("delete", {"name": _name("a"), "namespace": "rc2-prod", "policy": "Foreground"}) in (
        batch.calls
    )
    assert ("rc2-prod", _name("a")) not in batch.jobs
    again = backend.status(handles)  # the deleted Job stays FAILED, not REMOVED
    assert again[_id("a")] == failed
    assert again[_id("b")].state is JobState.RUNNING
    assert failed.to_dict()["retryable"] is False


def test_invalid_image_name_fails_at_once_and_a_missing_secret_after_its_grace() -> None:
    batch, core, clock, backend = _cluster(pod_check_seconds=0)
    handles = backend.submit([_job("a"), _job("b")])
    secret = 'secret "rc2-registry-secret" not found'
    core.pods["rc2-prod"] = [
        _pod(_name("a"), "rc2-a-1", waiting=("InvalidImageName", "couldn't parse image name")),
        _pod(_name("b"), "rc2-b-1", waiting=("CreateContainerConfigError", secret)),
    ]
    statuses = backend.status(handles)
    assert statuses[_id("a")].state is JobState.FAILED
    assert "InvalidImageName: couldn't parse image name" in (statuses[_id("a")].reason or "")
    assert statuses[_id("b")].state is JobState.PENDING
    clock.now = 119.0
    assert backend.status(handles)[_id("b")].state is JobState.PENDING
    clock.now = 120.0
    missing = backend.status(handles)[_id("b")]
    assert missing.state is JobState.FAILED and secret in (missing.reason or "")


def test_unschedulable_pod_fails_after_the_pending_timeout_with_the_scheduler_message() -> None:
    batch, core, clock, backend = _cluster(pending_timeout_seconds=1800, pod_check_seconds=0)
    (handle,) = backend.submit([_job("big")])
    batch.jobs[("rc2-prod", _name("big"))]["status"] = {"active": 1}
    message = "0/4 nodes are available: 4 Insufficient memory. preemption: 0/4 nodes are available"
    core.pods["rc2-prod"] = [_pod(_name("big"), "rc2-big-abcde", unschedulable=message)]
    assert backend.status([handle])[handle.id].state is JobState.PENDING  # not RUNNING
    clock.now = 1799.0
    assert backend.status([handle])[handle.id].state is JobState.PENDING
    clock.now = 1800.0
    failed = backend.status([handle])[handle.id]
    assert failed.state is JobState.FAILED and not failed.retryable
    assert failed.reason == (
        f"cluster job big (Kubernetes Job {_id('big')}, pod rc2-big-abcde) cannot start: "
        f"Unschedulable for 1800 s: {message}; Job deleted"
    )
    assert batch.calls[-1][0] == "delete"


def test_unschedulable_pods_queueing_behind_scheduled_ones_are_not_stuck() -> None:
    batch, core, clock, backend = _cluster(pending_timeout_seconds=1800)
    handles = backend.submit([_job("a"), _job("b"), _job("c")])
    full = "0/4 nodes are available: 4 Insufficient cpu."
    pods = core.pods["rc2-prod"] = [
        _pod(_name("a"), "rc2-a-1", phase="Running"),
        _pod(_name("b"), "rc2-b-1", unschedulable=full),
        _pod(_name("c"), "rc2-c-1", unschedulable=full),
    ]
    backend.status(handles)
    clock.now = 1000.0  # a finished, b was scheduled: the queue moves
    pods[:] = [_pod(_name("b"), "rc2-b-1", phase="Running"), pods[2]]
    backend.status(handles)
    clock.now = 2700.0  # c has waited 2700 s, but only 1700 s since a pod was scheduled
    assert backend.status(handles)[_id("c")].state is JobState.PENDING
    clock.now = 2800.0
    assert backend.status(handles)[_id("c")].state is JobState.FAILED


def test_job_without_pod_fails_after_the_timeout_and_none_waits_forever() -> None:
    batch, core, clock, backend = _cluster(pending_timeout_seconds=600)
    (handle,) = backend.submit([_job("quota")])
    assert backend.status([handle])[handle.id].state is JobState.PENDING
    clock.now = 600.0
    failed = backend.status([handle])[handle.id]
    assert failed.state is JobState.FAILED
    assert f"no pod for 600 s (`kubectl describe job -n rc2-prod {_name('quota')}` says why)" in (
        failed.reason or ""
    )

    batch, core, clock, backend = _cluster(pending_timeout_seconds=None)
    (handle,) = backend.submit([_job("big")])
    core.pods["rc2-prod"] = [_pod(_name("big"), "rc2-big-1", unschedulable="0/4 nodes")]
    clock.now = 10.0**7
    assert backend.status([handle])[handle.id].state is JobState.PENDING


def test_pods_are_listed_at_most_every_pod_check_seconds_and_only_when_needed() -> None:
    batch, core, clock, backend = _cluster(pod_check_seconds=15)
    handles = backend.submit([_job("a"), _job("b")])
    core.pods["rc2-prod"] = [_pod(_name("a"), "rc2-a-1", waiting=("InvalidImageName", "bad"))]
    assert backend.status(handles)[_id("a")].state is JobState.FAILED
    clock.now = 14.0  # decided on the listing at 0 s, not on one older than the time judged
    core.pods["rc2-prod"] = [_pod(_name("b"), "rc2-b-1", unschedulable="0/4 nodes")]
    for _ in range(3):
        assert backend.status(handles)[_id("b")].state is JobState.PENDING
    assert core.lists == 1
    clock.now = 15.0
    backend.status(handles)
    assert core.lists == 2
    batch.jobs[("rc2-prod", _name("b"))]["status"] = {  # finished Jobs need no pods
        "succeeded": 1,
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    clock.now = 100.0
    statuses = backend.status(handles)
    assert [s.state for s in statuses.values()] == [JobState.FAILED, JobState.SUCCEEDED]
    assert core.lists == 2

    batch, core, clock, backend = _cluster(
        fatal_waiting_reasons={},
        pending_timeout_seconds=None,
        container_creating_timeout_seconds=None,
    )
    backend.status(backend.submit([_job("a")]))
    assert core.lists == 0  # all checks switched off: pods are never read


def test_run_with_an_unschedulable_cluster_ends_reports_it_and_resumes(tmp_path: Path) -> None:
    big = ResourcesConfig(tasks={"c": ResourceRequest(request_memory_mb=8192)})
    config = make_config(retries=1).model_copy(update={"resources": big})
    cluster = FakeCluster(memory_mb=4096)
    summary = run_on_cluster(tmp_path, cluster, config=config)
    assert summary.status == "failed"  # it ended instead of waiting forever
    assert summary.counts["succeeded"] == 6 and summary.counts["failed"] == 1
    report = build_report(tmp_path / "repo", RUN)
    assert report.tasks["c"]["failed"] == 1 and report.tasks["c"]["retried"] == 0
    (error,) = report.errors
    where = r"cluster job step2_HSC \(Kubernetes Job rc2-prod/(rc2-step2-hsc-\w{8}), pod \1-pod\)"
    found = re.search(where, error["message"])
    assert found is not None, error["message"]
    assert "Unschedulable for 1" in error["message"]
    assert "Insufficient memory (8192Mi asked)" in error["message"]
    assert ("rc2-prod", found.group(1)) not in cluster.jobs  # deleted
    journal = Journal.for_run(tmp_path / "repo", RUN)
    assert not list(journal.events("retry_scheduled"))  # a new attempt would not fit either

    cluster.memory_mb = 16384  # the operator adds a bigger node
    backend = KubernetesBackend(cluster, SETTINGS, core_api=cluster.core, clock=cluster.clock)
    summary = restart_run(tmp_path / "repo", RUN, backend=backend)
    assert summary.status == "succeeded"
    with Butler(tmp_path / "repo") as butler:
        assert len(butler.query_datasets("c_out", collections=RUN)) == 1


def test_a_retried_cluster_gets_a_new_job_beside_the_finished_one(tmp_path: Path) -> None:
    cluster = FakeCluster(memory_mb=16384)
    summary = run_on_cluster(tmp_path, cluster, configs={"a": {"fail_on": [{"detector": 1}]}})
    assert summary.status == "failed" and summary.counts["succeeded"] == 4
    journal = Journal.for_run(tmp_path / "repo", RUN)
    names = [
        e["handle"]["info"]["k8s_name"]
        for e in journal.events("job_submitted")
        if e["cluster"] == "step1_HSC_1"
    ]
    assert len(names) == 2 and len(set(names)) == 2  # the retry's Job did not collide
    assert all(("rc2-prod", name) in cluster.jobs for name in names)


def test_job_statuses_are_read_ever_less_often_while_nothing_changes() -> None:
    batch, core, clock, backend = _cluster(status_poll_seconds=1, status_poll_max_seconds=4)
    handles = backend.submit([_job("a"), _job("b")])

    def reads() -> int:
        return sum(1 for call in batch.calls if call[0] == "read")

    expected = {0.0: 2, 0.9: 2, 1.0: 4, 2.9: 4, 3.0: 6, 6.9: 6, 7.0: 8, 10.9: 8, 11.0: 10}
    for now, count in expected.items():  # pauses 1, 2, 4, then 4 (the cap)
        clock.now = now
        assert all(s.state is JobState.PENDING for s in backend.status(handles).values())
        assert reads() == count, now
    batch.jobs[("rc2-prod", _name("a"))]["status"] = {
        "succeeded": 1,
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    clock.now = 14.9  # the change is seen at the next read, due at 15
    assert backend.status(handles)[_id("a")].state is JobState.PENDING
    clock.now = 15.0
    assert backend.status(handles)[_id("a")].state is JobState.SUCCEEDED
    clock.now = 15.9  # after a change the pause is back to 1 s
    backend.status(handles)
    assert reads() == 12
    (c,) = backend.submit([_job("c")])  # a new Job is read at once
    assert backend.status([handles[1], c])[c.id].state is JobState.PENDING
    assert reads() == 14
    backend.cancel([c])  # and so is a cancelled one
    assert backend.status([handles[1], c])[c.id].state is JobState.REMOVED


def test_the_jobs_of_a_run_are_read_by_one_list_from_list_from_jobs_on() -> None:
    batch, core, clock, backend = _cluster(status_poll_seconds=0)
    names = [f"j{i}" for i in range(LIST_FROM)]
    handles = backend.submit([_job(n) for n in names])
    other_run = dataclasses.replace(_job("x"), labels={"run": "u/someone/else"})
    (other,) = backend.submit([other_run])
    batch.calls.clear()
    batch.jobs[("rc2-prod", _name("j0"))]["status"] = {
        "succeeded": 1,
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    del batch.jobs[("rc2-prod", _name("j1"))]  # deleted by someone
    backend.cancel([handles[2]])
    batch.calls.clear()
    statuses = backend.status([*handles, other])
    assert batch.calls == [
        (
            "list",
            {
                "namespace": "rc2-prod",
                "label_selector": "app.kubernetes.io/name=rc2-platform,"
                "app.kubernetes.io/component=cluster-job,rc2/run=HSC-runs-RC2-2025-01",
            },
        ),
        ("read", {"name": job_object_name(other_run), "namespace": "rc2-prod"}),
    ]
    assert statuses[_id("j0")].state is JobState.SUCCEEDED
    assert statuses[_id("j1")] == JobStatus(JobState.REMOVED, None, "Job no longer exists")
    assert statuses[_id("j2")] == JobStatus(JobState.REMOVED, None, "cancelled")
    assert {statuses[_id(n)].state for n in names[3:]} == {JobState.PENDING}
    assert statuses[other.id].state is JobState.PENDING
    batch.calls.clear()
    backend.status(handles[: LIST_FROM - 1])  # fewer: one read each
    assert [c[0] for c in batch.calls] == ["read"] * (LIST_FROM - 1)
