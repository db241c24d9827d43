"""A double of the Kubernetes API for the backend's tests: ``BatchV1Api`` and ``CoreV1Api``.

Jobs are plain dicts (manifests as submitted, plus ``status``); pods and events are the
official client's model objects (``V1Pod``, ``CoreV1Event``), as the API server returns
them, so the backend reads the same shapes as in production.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes  # type: ignore[import-untyped]

from rc2_platform.execution.backends import ClusterJob
from rc2_platform.execution.backends.kubernetes import (
    KubernetesBackend,
    job_object_name,
    validate_manifest,
)
from rc2_platform.execution.execution_config import (
    DatastoreVolume,
    ExecutionConfig,
    KubernetesSettings,
)
from rc2_platform.execution.runner import RunOptions, RunSummary, run_graph
from rc2_platform_tests.execution.helpers import make_config, make_graph, make_repo

SETTINGS = KubernetesSettings(
    namespace="rc2-prod",
    image="registry.example.org/rc2-platform:0.1.0",
    image_pull_policy="Always",
    service_account="rc2-runner",
    datastore_volume=DatastoreVolume(pvc_name="rc2-repo", mount_path="/repo"),
    node_selector={"pool": "batch"},
    memory_limit_factor=1.5,
)


def run_on_cluster(
    tmp_path: Path,
    cluster: Any,
    *,
    settings: KubernetesSettings = SETTINGS,
    config: ExecutionConfig | None = None,
    configs: dict[str, dict[str, Any]] | None = None,
) -> RunSummary:
    """Make the test repository and graph under ``tmp_path`` (stand-in ``configs`` per task)
    and run it on ``cluster`` (a :class:`FakeCluster`) through the real Kubernetes backend
    (``config`` default: one retry)."""
    butler, raws = make_repo(tmp_path / "repo")
    butler.close()
    make_graph(tmp_path / "g.qgraph", raws, configs=configs)
    backend = KubernetesBackend(cluster, settings, core_api=cluster.core, clock=cluster.clock)
    return run_graph(
        tmp_path / "g.qgraph",
        tmp_path / "repo",
        config=config or make_config(retries=1),
        options=RunOptions(poll_seconds=0.001),
        backend=backend,
    )


def cluster_job(name: str = "step1-visit-1228", retries: int = 2) -> ClusterJob:
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


def job_name(cluster: str) -> str:
    """The Kubernetes Job name of ``_job(cluster)``."""
    return job_object_name(cluster_job(cluster))


def job_id(cluster: str) -> str:
    return f"rc2-prod/{job_name(cluster)}"


class _Response:
    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body)


def as_model(body: dict[str, Any], kind: str) -> dict[str, Any]:
    """``body`` read into the official client's model ``kind`` (``V1Job``; required fields
    checked by the models) and written back: a key the models do not know is lost."""
    api = kubernetes.client.ApiClient()
    result: dict[str, Any] = api.sanitize_for_serialization(api.deserialize(_Response(body), kind))
    return result


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
        assert as_model(body, "V1Job") == body  # nothing the client's models do not know
        validate_manifest(body)  # kubernetes-validate, strict
        key = (namespace, body["metadata"]["name"])
        if key in self.jobs:
            raise ApiError(409)
        self.jobs[key] = {**body, "status": {}}
        return body

    def list_namespaced_job(self, namespace: str, label_selector: str) -> dict[str, Any]:
        self.calls.append(("list", {"namespace": namespace, "label_selector": label_selector}))
        wanted = dict(term.split("=", 1) for term in label_selector.split(","))
        items = [
            job
            for (ns, _name), job in self.jobs.items()
            if ns == namespace
            and all(job["metadata"]["labels"].get(k) == v for k, v in wanted.items())
        ]
        return {"apiVersion": "batch/v1", "kind": "JobList", "items": items}

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


def pod(
    job: str,
    name: str,
    *,
    phase: str = "Pending",
    waiting: tuple[str, str] | None = None,
    unschedulable: str | None = None,
) -> Any:
    """A ``V1Pod`` of the Job ``job`` as the API server reports it (official model classes)."""
    m = kubernetes.client
    scheduled = m.V1PodCondition(type="PodScheduled", status="True")
    if unschedulable is not None:
        scheduled = m.V1PodCondition(
            type="PodScheduled", status="False", reason="Unschedulable", message=unschedulable
        )
    if waiting is not None:
        state = m.V1ContainerState(
            waiting=m.V1ContainerStateWaiting(reason=waiting[0], message=waiting[1])
        )
    elif phase == "Running":
        state = m.V1ContainerState(running=m.V1ContainerStateRunning())
    else:
        state = m.V1ContainerState(waiting=m.V1ContainerStateWaiting(reason="ContainerCreating"))
    containers = None
    if unschedulable is None:
        containers = [
            m.V1ContainerStatus(
                name="rc2", image=SETTINGS.image, image_id="", ready=phase == "Running",
                restart_count=0, state=state,
            )
        ]  # fmt: skip
    labels = {
        "app.kubernetes.io/name": "rc2-platform",
        "app.kubernetes.io/component": "cluster-job",
        "batch.kubernetes.io/job-name": job,
        "job-name": job,
    }
    return m.V1Pod(
        metadata=m.V1ObjectMeta(name=name, uid=f"uid-{name}", labels=labels),
        status=m.V1PodStatus(phase=phase, conditions=[scheduled], container_statuses=containers),
    )


def _matches(pod: Any, label_selector: str, field_selector: str) -> bool:
    labels = pod.metadata.labels or {}
    wanted = dict(term.split("=", 1) for term in label_selector.split(","))
    terms = field_selector.split(",") if field_selector else []
    assert all(t.startswith("status.phase!=") for t in terms), field_selector
    refused = {term.split("!=", 1)[1] for term in terms}
    return all(labels.get(k) == v for k, v in wanted.items()) and pod.status.phase not in refused


#: The time of the double's event at 0 s.
EPOCH = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)


def event(
    pod_name: str, kind: str, reason: str, message: str, *, count: int = 1, at: int = 0
) -> Any:
    """A ``CoreV1Event`` about the pod ``pod_name``, ``at`` seconds after :data:`EPOCH`,
    as kubelet and the attach-detach controller record them."""
    m = kubernetes.client
    when = EPOCH + timedelta(seconds=at)
    return m.CoreV1Event(
        metadata=m.V1ObjectMeta(name=f"{pod_name}.{at:x}{reason.lower()}", namespace="rc2-prod"),
        involved_object=m.V1ObjectReference(kind="Pod", name=pod_name, namespace="rc2-prod"),
        type=kind, reason=reason, message=message, count=count,
        first_timestamp=when, last_timestamp=when,
    )  # fmt: skip


class FakeCoreApi:
    """Serves pods like ``kubernetes.client.CoreV1Api.list_namespaced_pod`` and their
    events like ``list_namespaced_event`` (``events[namespace]``, any order)."""

    def __init__(self, batch: FakeBatchApi) -> None:
        self.batch = batch
        self.pods: dict[str, list[Any]] = {}
        self.events: dict[str, list[Any]] = {}
        self.lists = 0
        self.event_lists: list[str] = []  # the pod of each list_namespaced_event

    def list_namespaced_event(self, namespace: str, field_selector: str) -> Any:
        terms = dict(term.split("=", 1) for term in field_selector.split(","))
        assert set(terms) == {"involvedObject.kind", "involvedObject.name"}, field_selector
        self.event_lists.append(terms["involvedObject.name"])
        items = [
            e
            for e in self.events.get(namespace, [])
            if e.involved_object.kind == terms["involvedObject.kind"]
            and e.involved_object.name == terms["involvedObject.name"]
        ]
        return kubernetes.client.CoreV1EventList(items=items)

    def list_namespaced_pod(
        self, namespace: str, label_selector: str, field_selector: str = ""
    ) -> Any:
        self.lists += 1
        jobs = {name for ns, name in self.batch.jobs if ns == namespace}
        items = [
            pod
            for pod in self.pods.get(namespace, [])
            if pod.metadata.labels["job-name"] in jobs
            and _matches(pod, label_selector, field_selector)
        ]
        return kubernetes.client.V1PodList(items=items)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_cluster(**settings: Any) -> tuple[FakeBatchApi, FakeCoreApi, Clock, KubernetesBackend]:
    batch = FakeBatchApi()
    core = FakeCoreApi(batch)
    clock = Clock()
    config = SETTINGS.model_copy(update=settings)
    return batch, core, clock, KubernetesBackend(batch, config, core_api=core, clock=clock)


def ended_pod(job: str, name: str, spec: dict[str, Any], code: int, reason: str | None) -> Any:
    """A ``V1Pod`` of the Job ``job`` whose container ``rc2`` terminated with ``code`` and
    kubelet's ``reason`` (``OOMKilled``); its spec is the Job's pod template, read into the
    official client's ``V1PodSpec``."""
    m = kubernetes.client
    api = m.ApiClient()
    terminated = m.V1ContainerStateTerminated(exit_code=code, reason=reason)
    status = m.V1ContainerStatus(
        name="rc2", image=SETTINGS.image, image_id="", ready=False, restart_count=0,
        state=m.V1ContainerState(terminated=terminated),
    )  # fmt: skip
    labels = {**spec_labels(spec), "batch.kubernetes.io/job-name": job, "job-name": job}
    return m.V1Pod(
        metadata=m.V1ObjectMeta(
            name=name, uid=f"uid-{name}", labels=labels, creation_timestamp=EPOCH
        ),
        spec=api.deserialize(_Response(spec["spec"]), "V1PodSpec"),
        status=m.V1PodStatus(
            phase="Succeeded" if code == 0 else "Failed", container_statuses=[status]
        ),
    )


def spec_labels(template: dict[str, Any]) -> dict[str, str]:
    return dict(template["metadata"]["labels"])


def pod_failure_action(rules: list[dict[str, Any]], pod: Any) -> tuple[str, str | None]:
    """What the Job controller does with a failed pod under ``podFailurePolicy.rules``
    (``Count`` when no rule matches), and its ``FailJob`` message — the controller's rule
    matching (``pkg/controller/job/pod_failure_policy.go``) for exit codes and conditions."""
    for index, rule in enumerate(rules):
        on_codes = rule.get("onExitCodes")
        if on_codes is not None:
            for status in pod.status.container_statuses or []:
                ended = status.state.terminated
                if ended is None or ended.exit_code == 0:
                    continue
                if on_codes.get("containerName") not in (None, status.name):
                    continue
                listed = ended.exit_code in on_codes["values"]
                if listed == (on_codes["operator"] == "In"):
                    message = (
                        f"Container {status.name} for pod {pod.metadata.namespace}/"
                        f"{pod.metadata.name} failed with exit code {ended.exit_code} "
                        f"matching {rule['action']} rule at index {index}"
                    )
                    return rule["action"], message
        for pattern in rule.get("onPodConditions") or []:
            for condition in pod.status.conditions or []:
                if (condition.type, condition.status) == (pattern["type"], pattern["status"]):
                    return rule["action"], None
    return "Count", None


class FakeCluster(FakeBatchApi):
    """One node of ``memory_mb``: a Job whose pod fits runs its command here at once (with
    the pod's environment and working directory); a larger one stays Unschedulable. Each
    pod listing advances the clock by a minute.

    A cluster job named in ``needs_mb`` uses that much memory: a pod whose memory limit
    is below it is ``OOMKilled`` (exit code 137) before it records anything. Failed pods
    go through the Job's ``podFailurePolicy`` and ``backoffLimit`` as the Job controller
    takes them: a new pod, or the Job ``Failed``. Every pod is kept (``core.pods``)."""

    def __init__(self, memory_mb: int, needs_mb: dict[str, int] | None = None) -> None:
        super().__init__()
        self.memory_mb = memory_mb
        self.needs_mb = dict(needs_mb or {})
        self.core = FakeCoreApi(self)
        self.clock = Clock()
        list_pods = self.core.list_namespaced_pod

        def ticking(namespace: str, label_selector: str, field_selector: str = "") -> Any:
            self.clock.now += 60.0
            return list_pods(namespace, label_selector, field_selector)

        self.core.list_namespaced_pod = ticking  # type: ignore[method-assign]

    def create_namespaced_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        super().create_namespaced_job(namespace, body)
        name = body["metadata"]["name"]
        (container,) = body["spec"]["template"]["spec"]["containers"]
        request = int(container["resources"]["requests"]["memory"].removesuffix("Mi"))
        job = self.jobs[(namespace, name)]
        if request > self.memory_mb:
            job["status"] = {"active": 1}
            message = f"0/1 nodes are available: 1 Insufficient memory ({request}Mi asked)."
            self.core.pods.setdefault(namespace, []).append(
                pod(name, f"{name}-pod", unschedulable=message)
            )
            return body
        job["status"] = self._run_pods(namespace, name, body)
        return body

    def _run_pods(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Start pods until one succeeds or the Job fails; the Job's final status."""
        spec = body["spec"]
        (container,) = spec["template"]["spec"]["containers"]
        limit = int(container["resources"]["limits"]["memory"].removesuffix("Mi"))
        needs = self.needs_mb.get(body["metadata"]["annotations"]["rc2/cluster-name"], 0)
        rules = spec.get("podFailurePolicy", {}).get("rules", [])
        failed = 0
        for n in range(spec["backoffLimit"] + 1):
            if limit < needs:
                code, reason = 137, "OOMKilled"
            else:
                env = {**os.environ, **{e["name"]: e["value"] for e in container["env"]}}
                proc = subprocess.run(container["command"], env=env, cwd=container["workingDir"])
                code, reason = proc.returncode, None if proc.returncode == 0 else "Error"
            ended = ended_pod(name, f"{name}-{n}", spec["template"], code, reason)
            ended.metadata.namespace = namespace
            self.core.pods.setdefault(namespace, []).append(ended)
            if code == 0:
                return {"succeeded": 1, "failed": failed,
                        "conditions": [{"type": "Complete", "status": "True"}]}  # fmt: skip
            failed += 1
            action, message = pod_failure_action(rules, ended)
            assert action in ("Count", "FailJob"), action
            if action == "FailJob":
                return {"failed": failed, "conditions": [
                    {"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
                     "message": message}]}  # fmt: skip
        return {"failed": failed, "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit"}]}  # fmt: skip
