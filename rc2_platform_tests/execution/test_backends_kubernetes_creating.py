"""Kubernetes pods stuck creating their containers (ContainerCreating): a volume that cannot
attach or mount, a missing Secret volume. Against the API double (official model objects
for pods and events) on an injected clock; a whole ``rc2 run`` on the double's cluster."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rc2_platform.butler import Butler
from rc2_platform.execution.backends import JobState
from rc2_platform.execution.backends.kubernetes_pods import PodEvent, creating_cause
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.report import build_report
from rc2_platform_tests.execution.helpers import RUN
from rc2_platform_tests.execution.k8s_double import (
    SETTINGS,
    FakeBatchApi,
    FakeCluster,
    cluster_job,
    event,
    fake_cluster,
    job_id,
    job_name,
    pod,
    run_on_cluster,
)

MULTI_ATTACH = (
    'Multi-Attach error for volume "pvc-3f1c9e2a" Volume is already exclusively attached to '
    "one node and can't be attached to another"
)
SECRET_VOLUME = 'MountVolume.SetUp failed for volume "db-credentials" : secret "rc2-db" not found'
MOUNT_TIMEOUT = (
    "Unable to attach or mount volumes: unmounted volumes=[datastore], unattached "
    "volumes=[datastore kube-api-access-x2v9d]: timed out waiting for the condition"
)


def test_volume_that_cannot_attach_fails_after_the_timeout_retryable_naming_the_event() -> None:
    batch, core, clock, backend = fake_cluster(pod_check_seconds=0)
    handles = backend.submit([cluster_job("a"), cluster_job("b")])
    core.pods["rc2-prod"] = [
        pod(job_name("a"), "rc2-a-m4tch"),  # scheduled, ContainerCreating
        pod(job_name("b"), "rc2-b-1", phase="Running"),
    ]
    core.events["rc2-prod"] = [
        event("rc2-a-m4tch", "Normal", "Scheduled", "Successfully assigned rc2-prod/rc2-a-m4tch"),
        event("rc2-a-m4tch", "Warning", "FailedAttachVolume", MULTI_ATTACH, count=4, at=5),
    ]
    assert backend.status(handles)[job_id("a")].state is JobState.PENDING
    clock.now = 599.0
    assert backend.status(handles)[job_id("a")].state is JobState.PENDING
    assert core.event_lists == []  # events are read only once the timeout has passed
    clock.now = 600.0
    failed = backend.status(handles)[job_id("a")]
    assert failed.state is JobState.FAILED and failed.retryable
    assert failed.reason == (
        f"cluster job a (Kubernetes Job {job_id('a')}, pod rc2-a-m4tch) cannot start: "
        f"ContainerCreating for 600 s: FailedAttachVolume: {MULTI_ATTACH} (x4); Job deleted"
    )
    assert core.event_lists == ["rc2-a-m4tch"]
    assert ("rc2-prod", job_name("a")) not in batch.jobs
    assert backend.status(handles)[job_id("b")].state is JobState.RUNNING
    assert "retryable" not in failed.to_dict()


def test_missing_secret_volume_is_not_retried_and_the_latest_warning_is_the_cause() -> None:
    batch, core, clock, backend = fake_cluster(
        pod_check_seconds=0, container_creating_timeout_seconds=300
    )
    (handle,) = backend.submit([cluster_job("a")])
    core.pods["rc2-prod"] = [pod(job_name("a"), "rc2-a-1")]
    core.events["rc2-prod"] = [  # listed out of order: the newest warning wins
        event("rc2-a-1", "Warning", "FailedMount", SECRET_VOLUME, count=3, at=130),
        event("rc2-a-1", "Warning", "FailedMount", MOUNT_TIMEOUT, at=125),
        event("rc2-a-1", "Normal", "Scheduled", "Successfully assigned", at=0),
    ]
    backend.status([handle])
    clock.now = 300.0
    failed = backend.status([handle])[handle.id]
    assert failed.state is JobState.FAILED and not failed.retryable
    assert f"ContainerCreating for 300 s: FailedMount: {SECRET_VOLUME} (x3); Job deleted" in (
        failed.reason or ""
    )
    assert failed.to_dict()["retryable"] is False


def test_a_pod_still_pulling_its_image_waits_and_null_waits_forever() -> None:
    batch, core, clock, backend = fake_cluster(pod_check_seconds=0)
    (handle,) = backend.submit([cluster_job("a")])
    core.pods["rc2-prod"] = [pod(job_name("a"), "rc2-a-1")]
    pulling = event("rc2-a-1", "Normal", "Pulling", 'Pulling image "rc2:0.1.0"', at=10)
    core.events["rc2-prod"] = [
        event("rc2-a-1", "Warning", "FailedMount", MOUNT_TIMEOUT, at=5),  # then it mounted
        pulling,
    ]
    backend.status([handle])
    clock.now = 3000.0  # a large image on a slow registry is not stuck
    assert backend.status([handle])[handle.id].state is JobState.PENDING
    assert core.event_lists == ["rc2-a-1"]
    core.events["rc2-prod"].append(event("rc2-a-1", "Normal", "Pulled", "pulled", at=2990))
    clock.now = 3001.0  # the image is there and nothing else explains the wait
    failed = backend.status([handle])[handle.id]
    assert failed.state is JobState.FAILED and failed.retryable
    assert f"ContainerCreating for 3001 s: FailedMount: {MOUNT_TIMEOUT}; Job deleted" in (
        failed.reason or ""
    )

    batch, core, clock, backend = fake_cluster(container_creating_timeout_seconds=None)
    (handle,) = backend.submit([cluster_job("a")])
    core.pods["rc2-prod"] = [pod(job_name("a"), "rc2-a-1")]
    backend.status([handle])
    clock.now = 10.0**7
    assert backend.status([handle])[handle.id].state is JobState.PENDING
    assert core.event_lists == []


def test_creating_cause_without_warnings_and_with_config_errors() -> None:
    assert creating_cause([]) == ("no warning event (`kubectl describe pod` may say more)", True)
    for message, retryable in [
        ('MountVolume.SetUp failed for volume "cfg" : configmap "rc2-site" not found', False),
        ('persistentvolumeclaim "rc2-repo" not found', False),
        ("couldn't find key password in Secret rc2-prod/rc2-db", False),
        ("MountVolume.MountDevice failed: rpc error: code = DeadlineExceeded", True),
        ("Failed to create pod sandbox: plugin type=calico failed (add)", True),
    ]:
        found = creating_cause([PodEvent("Warning", "FailedMount", message, 1, "t")])
        assert found == (f"FailedMount: {message}", retryable)


def test_events_that_cannot_be_read_still_fail_the_pod_saying_so() -> None:
    batch, core, clock, backend = fake_cluster(pod_check_seconds=0)
    (handle,) = backend.submit([cluster_job("a")])
    core.pods["rc2-prod"] = [pod(job_name("a"), "rc2-a-1")]

    def forbidden(namespace: str, field_selector: str) -> Any:
        raise RuntimeError("(403) Forbidden: cannot list resource events")

    core.list_namespaced_event = forbidden  # type: ignore[method-assign]
    backend.status([handle])
    clock.now = 600.0
    failed = backend.status([handle])[handle.id]
    assert failed.state is JobState.FAILED and failed.retryable
    assert "EventsUnreadable: its events could not be read ((403) Forbidden" in (
        failed.reason or ""
    )


class MountTrouble(FakeCluster):
    """The double's cluster, where the first pod of a cluster job named in ``stuck`` sits in
    ContainerCreating with a warning event instead of running."""

    def __init__(self, stuck: dict[str, tuple[str, str]]) -> None:
        super().__init__(memory_mb=16384)
        self.stuck = dict(stuck)

    def create_namespaced_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        cluster = body["metadata"]["annotations"]["rc2/cluster-name"]
        if cluster not in self.stuck:
            return super().create_namespaced_job(namespace, body)
        reason, message = self.stuck.pop(cluster)
        FakeBatchApi.create_namespaced_job(self, namespace, body)  # created, no pod runs
        name = body["metadata"]["name"]
        self.jobs[(namespace, name)]["status"] = {"active": 1}
        self.core.pods.setdefault(namespace, []).append(pod(name, f"{name}-pod"))
        self.core.events.setdefault(namespace, []).append(
            event(f"{name}-pod", "Warning", reason, message, count=7)
        )
        return body


def _run(tmp_path: Path, stuck: dict[str, tuple[str, str]]) -> tuple[str, MountTrouble]:
    cluster = MountTrouble(stuck)
    settings = SETTINGS.model_copy(update={"container_creating_timeout_seconds": 300})
    return run_on_cluster(tmp_path, cluster, settings=settings).status, cluster


def test_run_retries_a_cluster_whose_volume_did_not_attach_and_succeeds(tmp_path: Path) -> None:
    status, cluster = _run(tmp_path, {"step2_HSC": ("FailedAttachVolume", MULTI_ATTACH)})
    assert status == "succeeded"
    journal = Journal.for_run(tmp_path / "repo", RUN)
    (retry,) = journal.events("retry_scheduled")
    assert retry["cluster"] == "step2_HSC" and retry["attempt"] == 2
    first = next(e for e in journal.events("job_finished") if e["cluster"] == "step2_HSC")
    assert first["status"]["state"] == "FAILED" and "retryable" not in first["status"]
    assert f"FailedAttachVolume: {MULTI_ATTACH} (x7)" in first["status"]["reason"]
    with Butler(tmp_path / "repo") as butler:
        assert len(butler.query_datasets("c_out", collections=RUN)) == 1


def test_run_with_a_missing_secret_volume_fails_the_cluster_once_and_reports_it(
    tmp_path: Path,
) -> None:
    status, cluster = _run(tmp_path, {"step2_HSC": ("FailedMount", SECRET_VOLUME)})
    assert status == "failed"
    journal = Journal.for_run(tmp_path / "repo", RUN)
    assert not list(journal.events("retry_scheduled"))
    report = build_report(tmp_path / "repo", RUN)
    assert report.tasks["c"]["failed"] == 1 and report.tasks["c"]["retried"] == 0
    (error,) = report.errors
    where = r"cluster job step2_HSC \(Kubernetes Job rc2-prod/(rc2-step2-hsc-\w{8}), pod \1-pod\)"
    assert re.search(where, error["message"]), error["message"]
    assert "ContainerCreating for 3" in error["message"]
    assert f"FailedMount: {SECRET_VOLUME} (x7)" in error["message"]
