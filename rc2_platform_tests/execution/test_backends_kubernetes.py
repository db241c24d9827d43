"""Kubernetes backend: manifests validated offline in strict mode, API calls against a fake client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rc2_platform.errors import ConfigError, JobSubmissionError
from rc2_platform.execution.backends import ClusterJob, JobState
from rc2_platform.execution.backends.kubernetes import (
    KubernetesBackend,
    build_job_manifest,
    kubernetes_name,
    validate_manifest,
)
from rc2_platform.execution.execution_config import DatastoreVolume, KubernetesSettings

SETTINGS = KubernetesSettings(
    namespace="rc2-prod",
    image="registry.example.org/rc2-platform:0.1.0",
    image_pull_policy="Always",
    service_account="rc2-runner",
    datastore_volume=DatastoreVolume(pvc_name="rc2-repo", mount_path="/repo"),
    node_selector={"pool": "batch"},
    memory_limit_factor=1.5,
)


def _job(name: str = "step1-visit-1228", retries: int = 2) -> ClusterJob:
    return ClusterJob(
        name=name,
        command=[
            "rc2",
            "run-cluster",
            "/repo/graphs/t9615.qg",
            "--cluster",
            name,
            "--repo",
            "/repo",
        ],
        request_memory_mb=4096,
        request_cpus=2,
        env={"RC2_LOG_LEVEL": "INFO"},
        labels={"step": "step1", "tract": "9615", "run": "HSC/runs/RC2/2025-01"},
        working_dir=Path("/repo/work"),
        log_dir=Path("/repo/logs"),
        max_retries=retries,
    )


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
    assert meta["namespace"] == "rc2-prod" and meta["name"] == "rc2-step1-visit-1228"
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


class ApiError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"({status})")
        self.status = status


class FakeBatchApi:
    """Records calls like kubernetes.client.BatchV1Api; serves job statuses from a dict."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}

    def create_namespaced_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", {"namespace": namespace, "body": body}))
        key = (namespace, body["metadata"]["name"])
        if key in self.jobs:
            raise ApiError(409)
        self.jobs[key] = {**body, "status": {}}
        return body

    def read_namespaced_job_status(self, name: str, namespace: str) -> dict[str, Any]:
        self.calls.append(("read", {"name": name, "namespace": namespace}))
        if (namespace, name) not in self.jobs:
            raise ApiError(404)
        return self.jobs[(namespace, name)]

    def delete_namespaced_job(self, name: str, namespace: str, propagation_policy: str) -> None:
        self.calls.append(
            ("delete", {"name": name, "namespace": namespace, "policy": propagation_policy})
        )
        self.jobs.pop((namespace, name), None)


def test_submit_status_cancel_against_fake_api() -> None:
    api = FakeBatchApi()
    backend = KubernetesBackend(api, SETTINGS)
    handles = backend.submit([_job("a"), _job("b"), _job("c"), _job("d")])
    assert [c[0] for c in api.calls] == ["create"] * 4
    assert handles[0].id == "rc2-prod/rc2-a"
    validate_manifest(api.calls[0][1]["body"])
    assert {s.state for s in backend.status(handles).values()} == {JobState.PENDING}

    api.jobs[("rc2-prod", "rc2-a")]["status"] = {
        "succeeded": 1,
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    api.jobs[("rc2-prod", "rc2-b")]["status"] = {
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
    api.jobs[("rc2-prod", "rc2-c")]["status"] = {"active": 1}
    backend.cancel([handles[3]])
    assert api.calls[-1] == (
        "delete",
        {"name": "rc2-d", "namespace": "rc2-prod", "policy": "Foreground"},
    )
    statuses = backend.status(handles)
    assert statuses["rc2-prod/rc2-a"].state is JobState.SUCCEEDED
    failed = statuses["rc2-prod/rc2-b"]
    assert failed.state is JobState.FAILED and "BackoffLimitExceeded" in (failed.reason or "")
    assert failed.attempts == 3
    assert statuses["rc2-prod/rc2-c"].state is JobState.RUNNING
    assert statuses["rc2-prod/rc2-d"].state is JobState.REMOVED


def test_existing_job_name_gives_clear_error() -> None:
    api = FakeBatchApi()
    backend = KubernetesBackend(api, SETTINGS)
    backend.submit([_job("a")])
    with pytest.raises(JobSubmissionError, match="exists"):
        backend.submit([_job("a")])
