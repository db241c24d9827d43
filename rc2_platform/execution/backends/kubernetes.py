"""The Kubernetes backend: one ``batch/v1 Job`` per cluster job, through an injected API client.

The API client is duck-typed like ``kubernetes.client.BatchV1Api``
(``create_namespaced_job``, ``read_namespaced_job_status``, ``list_namespaced_job``,
``delete_namespaced_job``),
so tests drive the backend with a recording fake and production passes the real
client (or the Dagster layer wraps the same manifest in ``PipesK8sClient``). A
``CoreV1Api`` (``list_namespaced_pod``, ``list_namespaced_event``) lets it see pods that
can never start (:mod:`.kubernetes_pods`).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from rc2_platform.errors import BackendError, ConfigError, JobSubmissionError

from ..execution_config import KubernetesSettings
from .base import Backend, ClusterJob, JobHandle, JobState, JobStatus
from .kubernetes_failures import failed_job_status, pod_failure_rules, policy_exit_code
from .kubernetes_pods import PodView, PodWatch, api_field, pod_view, read_pod_events
from .polling import Backoff

__all__ = [
    "APP_NAME",
    "DEFAULT_SCHEMA_VERSION",
    "LIST_FROM",
    "POD_LABEL_SELECTOR",
    "KubernetesBackend",
    "build_job_manifest",
    "job_object_name",
    "kubernetes_name",
    "validate_manifest",
]

#: ``app.kubernetes.io/name`` of everything rc2 creates.
APP_NAME = "rc2-platform"
#: Kubernetes version whose schema :func:`validate_manifest` checks by default.
DEFAULT_SCHEMA_VERSION = "1.30"
#: Selects the pods of rc2's cluster jobs (the labels of every Job's pod template).
POD_LABEL_SELECTOR = f"app.kubernetes.io/name={APP_NAME},app.kubernetes.io/component=cluster-job"
#: Unfinished Jobs of one RUN read at once: from this many on, one ``list_namespaced_job``
#: (label selector of the RUN) instead of one ``read_namespaced_job_status`` per Job.
LIST_FROM = 10

_log = logging.getLogger(__name__)


def kubernetes_name(text: str, prefix: str = "rc2-") -> str:
    """Turn ``text`` into a DNS-1123 label (<= 63 chars), unique via a hash when shortened."""
    name = prefix + re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if len(name) > 63:
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        name = name[:54].rstrip("-") + "-" + digest
    return name


def job_object_name(job: ClusterJob) -> str:
    """The Kubernetes Job name of one attempt: ``rc2-<cluster>-<hash>``.

    The hash (8 hex digits) is of the cluster job's name and working directory, which is
    its attempt folder (``REPO/_runs/<run>/jobs/<cluster>/attempt<N>``): a retry of the
    same cluster, or the same cluster in another RUN, gets its own name while the earlier
    Job is kept (``ttlSecondsAfterFinished``), and submitting the same attempt twice is
    refused (409).
    """
    digest = hashlib.sha1(f"{job.name}\0{job.working_dir}".encode()).hexdigest()[:8]
    return kubernetes_name(job.name)[:54].rstrip("-") + "-" + digest


def _label_value(value: str) -> str:
    """Make a valid label value (<= 63 chars of ``[A-Za-z0-9._-]``, alphanumeric ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", value)[:63]
    return cleaned.strip("-._")


def _label_key(key: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", key)[:63].strip("-._")
    if not name:
        raise ConfigError(f"Label key {key!r} has no usable characters for a Kubernetes label.")
    return f"rc2/{name}"


def _handle_info(namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """A handle's ``info``: namespace, Job name and the label selector of its RUN's Jobs."""
    info: dict[str, Any] = {"namespace": namespace, "k8s_name": manifest["metadata"]["name"]}
    run = manifest["metadata"]["labels"].get("rc2/run")
    if run:
        info["selector"] = f"{POD_LABEL_SELECTOR},rc2/run={run}"
    return info


def build_job_manifest(
    job: ClusterJob, settings: KubernetesSettings | None = None
) -> dict[str, Any]:
    """Return the ``batch/v1 Job`` manifest (a plain dict) of one cluster job.

    The pod runs ``job.command`` in ``settings.image`` with ``restartPolicy: Never``,
    requests ``job.request_memory_mb`` MiB and ``job.request_cpus`` cores (memory limit
    = request x ``memory_limit_factor``; no CPU limit), mounts the datastore PVC, and is
    retried ``job.max_retries`` times (``backoffLimit``); disruptions (node drain,
    preemption) do not count as failures, and a container killed by SIGKILL (exit code
    137: the kernel's OOM killer) fails the Job at once, for the orchestrator to retry
    with more memory (:func:`.kubernetes_failures.pod_failure_rules`).
    """
    settings = settings or KubernetesSettings()
    name = job_object_name(job)
    labels = {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/component": "cluster-job",
        "rc2/cluster": _label_value(job.name),
    }
    labels.update({_label_key(k): _label_value(v) for k, v in sorted(job.labels.items())})
    volume = settings.datastore_volume
    container: dict[str, Any] = {
        "name": "rc2",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(job.command),
        "workingDir": str(job.working_dir),
        "env": [{"name": k, "value": v} for k, v in sorted(job.env.items())],
        "resources": {
            "requests": {"memory": f"{job.request_memory_mb}Mi", "cpu": str(job.request_cpus)},
            "limits": {"memory": f"{int(job.request_memory_mb * settings.memory_limit_factor)}Mi"},
        },
        "volumeMounts": [
            {"name": "datastore", "mountPath": volume.mount_path, "readOnly": volume.read_only}
        ],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [
            {
                "name": "datastore",
                "persistentVolumeClaim": {
                    "claimName": volume.pvc_name,
                    "readOnly": volume.read_only,
                },
            }
        ],
    }
    if settings.service_account:
        pod_spec["serviceAccountName"] = settings.service_account
    if settings.node_selector:
        pod_spec["nodeSelector"] = dict(settings.node_selector)
    spec: dict[str, Any] = {
        "backoffLimit": job.max_retries,
        "podFailurePolicy": {"rules": pod_failure_rules(container["name"])},
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    if settings.ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = settings.ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": {"rc2/cluster-name": job.name},
        },
        "spec": spec,
    }


def validate_manifest(manifest: dict[str, Any], version: str = DEFAULT_SCHEMA_VERSION) -> None:
    """Validate a manifest offline against the Kubernetes schema (strict: no unknown keys).

    Raises
    ------
    ConfigError
        If the manifest does not match the schema of Kubernetes ``version``.
    """
    import kubernetes_validate

    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        name = manifest.get("metadata", {}).get("name")
        path = ".".join(str(p) for p in exc.path)
        raise ConfigError(
            f"Kubernetes manifest {name!r} is invalid at {path or '<top>'}: {exc.message}"
        ) from None


def job_status_from_api(job_object: Any) -> JobStatus:
    """Map a ``V1Job`` (object or dict) to a :class:`JobStatus`."""
    status = api_field(job_object, "status")
    active = api_field(status, "active") or 0
    succeeded = api_field(status, "succeeded") or 0
    failed = api_field(status, "failed") or 0
    attempts = active + succeeded + failed
    for condition in api_field(status, "conditions") or []:
        if api_field(condition, "status") != "True":
            continue
        kind = api_field(condition, "type")
        reason = api_field(condition, "reason")
        message = api_field(condition, "message")
        text = ": ".join(str(p) for p in (reason, message) if p) or None
        if kind == "Complete":
            return JobStatus(JobState.SUCCEEDED, 0, None, attempts)
        if kind == "Failed":  # the exit code of a FailJob rule (137) is in its message
            return JobStatus(JobState.FAILED, policy_exit_code(reason, message), text, attempts)
        if kind == "Suspended":
            return JobStatus(JobState.HELD, None, text, attempts)
    if active:
        return JobStatus(JobState.RUNNING, None, None, attempts)
    return JobStatus(JobState.PENDING, None, None, attempts)


class KubernetesBackend(Backend):
    """Run cluster jobs as Kubernetes ``batch/v1`` Jobs.

    Parameters
    ----------
    api : `object`
        A ``kubernetes.client.BatchV1Api`` or anything with the same four methods.
    settings : `KubernetesSettings`, optional
        Namespace, image, service account, datastore volume, node selector, and when a
        pod that cannot start fails its Job (``fatal_waiting_reasons``,
        ``pending_timeout_seconds``, ``container_creating_timeout_seconds``,
        ``pod_check_seconds``).
    core_api : `object`, optional
        A ``kubernetes.client.CoreV1Api`` (``list_namespaced_pod``, and
        ``list_namespaced_event`` for a pod stuck creating its containers); without it
        pods are not read, and a Job whose pod can never start stays PENDING/RUNNING.
    clock : callable, optional
        Seconds, monotonic (``time.monotonic``); the pod timers run on it.
    """

    name: ClassVar[str] = "kubernetes"

    def __init__(
        self,
        api: Any,
        settings: KubernetesSettings | None = None,
        *,
        core_api: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.core_api = core_api
        self.settings = settings or KubernetesSettings()
        self.clock = clock
        self._deleted: set[str] = set()
        # handle id -> FAILED for good: a stuck Job we deleted, a failed one its pods explain
        self._stuck: dict[str, JobStatus] = {}
        self._pods = PodWatch(self.settings)
        self._listed: dict[str, tuple[float, dict[str, list[PodView]]]] = {}
        self._backoff = Backoff(
            self.settings.status_poll_seconds, self.settings.status_poll_max_seconds
        )
        self._known: dict[str, JobStatus] = {}  # handle id -> status at the last read
        self._next_read = float("-inf")

    def submit(self, jobs: Sequence[ClusterJob]) -> list[JobHandle]:
        """Create one Job per cluster job in ``settings.namespace``."""
        manifests = [build_job_manifest(job, self.settings) for job in jobs]
        names = [m["metadata"]["name"] for m in manifests]
        if len(set(names)) != len(names):
            raise JobSubmissionError(f"Cluster job names collide as Kubernetes names: {names}.")
        handles = []
        namespace = self.settings.namespace
        for job, manifest in zip(jobs, manifests, strict=True):
            try:
                self.api.create_namespaced_job(namespace=namespace, body=manifest)
            except Exception as exc:  # ApiException and transport errors
                status = getattr(exc, "status", None)
                hint = (
                    " (a Job of that name exists: this attempt was submitted already, or by "
                    "a removed RUN of the same name; `kubectl delete job -n "
                    f"{namespace} {manifest['metadata']['name']}` if it is stale)"
                    if status == 409
                    else ""
                )
                raise JobSubmissionError(
                    f"Could not create Kubernetes Job {manifest['metadata']['name']!r} for cluster "
                    f"job {job.name!r} in namespace {namespace!r}: {exc}{hint}"
                ) from None
            self._backoff.reset()
            handles.append(
                JobHandle(
                    id=f"{namespace}/{manifest['metadata']['name']}",
                    job_name=job.name,
                    backend=self.name,
                    info=_handle_info(namespace, manifest),
                )
            )
        return handles

    def status(self, handles: Sequence[JobHandle]) -> dict[str, JobStatus]:
        """Each Job's status; a deleted (404) Job is REMOVED.

        The API server is read (one ``list_namespaced_job`` for the Jobs of a RUN when
        there are at least :data:`LIST_FROM`, else one ``read_namespaced_job_status`` per
        Job) ``status_poll_seconds`` after a submission, a cancel or a change of state, then
        ever less often while nothing changes (the pause doubles up to
        ``status_poll_max_seconds``); in between, and for a handle already read, the
        statuses of the last read are returned. A Job that is not finished has its pods
        read too (one ``list_namespaced_pod`` per namespace, at most every
        ``pod_check_seconds``): it is RUNNING when a pod runs, and FAILED (the Job
        deleted) when its pod can never start. A failed Job has its pods read once
        (:func:`.kubernetes_failures.failed_job_status`): a container killed for memory
        (``OOMKilled``) makes it ``memory_exceeded``, and the reason names the pod.
        """
        self._check_handles(handles)
        now = self.clock()
        if now < self._next_read and all(h.id in self._known for h in handles):
            return {h.id: self._known[h.id] for h in handles}
        result = self._read(handles)
        changed = any(self._known.get(k) != status for k, status in result.items())
        self._known.update(result)
        self._next_read = now + self._backoff.next(changed)
        return result

    def _read(self, handles: Sequence[JobHandle]) -> dict[str, JobStatus]:
        """Read the Jobs (and, for unfinished ones, their pods) from the API server."""
        result: dict[str, JobStatus] = {}
        unfinished: list[JobHandle] = []
        objects = self._job_objects([h for h in handles if h.id not in self._stuck])
        for handle in handles:
            if handle.id in self._stuck:
                result[handle.id] = self._stuck[handle.id]
                continue
            namespace, name = handle.id.split("/", 1)
            job_object = objects[handle.id]
            if job_object is None:  # 404
                reason = "cancelled" if handle.id in self._deleted else "Job no longer exists"
                result[handle.id] = JobStatus(JobState.REMOVED, None, reason)
                continue
            status = job_status_from_api(job_object)
            if status.state is JobState.FAILED and self.core_api is not None:
                status = failed_job_status(self.core_api, namespace, name, handle.job_name, status)
                self._stuck[handle.id] = status
            if handle.id in self._deleted and not status.state.is_terminal:
                status = JobStatus(JobState.REMOVED, None, "cancelled", status.attempts)
            elif not status.state.is_terminal and handle.id not in self._deleted:
                unfinished.append(handle)
            else:
                self._pods.forget(namespace, name)
            result[handle.id] = status
        if unfinished and self.core_api is not None and self._pods.needed:
            for handle in unfinished:
                result[handle.id] = self._pod_status(handle, result[handle.id])
        return result

    def _job_objects(self, handles: Sequence[JobHandle]) -> dict[str, Any]:
        """The Job object of each handle (None: it does not exist).

        Handles of one RUN in one namespace (``info["selector"]``, set at submission) are
        read by one ``list_namespaced_job`` with that label selector when there are at
        least :data:`LIST_FROM` of them; the others one ``read_namespaced_job_status``
        each.
        """
        groups: dict[tuple[str, str], list[JobHandle]] = {}
        objects: dict[str, Any] = {}
        for handle in handles:
            selector = handle.info.get("selector")
            namespace, name = handle.id.split("/", 1)
            if isinstance(selector, str):
                groups.setdefault((namespace, selector), []).append(handle)
            else:
                objects[handle.id] = self._read_job(namespace, name)
        for (namespace, selector), members in groups.items():
            if len(members) < LIST_FROM:
                for handle in members:
                    objects[handle.id] = self._read_job(*handle.id.split("/", 1))
                continue
            try:
                answer = self.api.list_namespaced_job(namespace=namespace, label_selector=selector)
            except Exception as exc:
                raise BackendError(
                    f"Could not list the Kubernetes Jobs {selector!r} in namespace "
                    f"{namespace!r}: {exc}"
                ) from None
            listed = {
                api_field(api_field(j, "metadata"), "name"): j
                for j in api_field(answer, "items") or []
            }
            for handle in members:
                objects[handle.id] = listed.get(handle.id.split("/", 1)[1])
        return objects

    def _read_job(self, namespace: str, name: str) -> Any:
        try:
            return self.api.read_namespaced_job_status(name=name, namespace=namespace)
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise BackendError(
                f"Could not read Kubernetes Job {namespace}/{name!r}: {exc}"
            ) from None

    def _pod_status(self, handle: JobHandle, status: JobStatus) -> JobStatus:
        """The status of an unfinished Job refined by its pods; FAILED when stuck."""
        namespace, name = handle.id.split("/", 1)
        listed_at, pods = self._list_pods(namespace)
        verdict = self._pods.verdict(
            namespace,
            name,
            status,
            pods.get(name, []),
            listed_at,
            lambda pod: read_pod_events(self.core_api, namespace, pod),
        )
        if isinstance(verdict, JobStatus):
            return verdict
        pod = f", pod {verdict.pod}" if verdict.pod else ""
        line = (
            f"cluster job {handle.job_name} (Kubernetes Job {namespace}/{name}{pod}) cannot "
            f"start: {verdict.cause}"
        )
        if verdict.pod is None:
            line += f" (`kubectl describe job -n {namespace} {name}` says why)"
        try:
            self.api.delete_namespaced_job(
                name=name, namespace=namespace, propagation_policy="Foreground"
            )
            line += "; Job deleted"
        except Exception as exc:
            if getattr(exc, "status", None) != 404:
                line += f"; deleting the Job failed ({exc}): delete it by hand"
        self._pods.forget(namespace, name)
        failed = JobStatus(JobState.FAILED, None, line, status.attempts, verdict.retryable)
        self._stuck[handle.id] = failed
        _log.warning("%s", line)
        return failed

    def _list_pods(self, namespace: str) -> tuple[float, dict[str, list[PodView]]]:
        """When the namespace's unfinished rc2 pods were listed (at most every
        ``pod_check_seconds``), and those pods by Job name."""
        now = self.clock()
        listed = self._listed.get(namespace)
        if listed is not None and now - listed[0] < self.settings.pod_check_seconds:
            return listed
        try:
            answer = self.core_api.list_namespaced_pod(
                namespace=namespace,
                label_selector=POD_LABEL_SELECTOR,
                field_selector="status.phase!=Succeeded,status.phase!=Failed",
            )
        except Exception as exc:
            raise BackendError(
                f"Could not list the pods of rc2 Jobs in Kubernetes namespace {namespace!r}: "
                f"{exc} (the orchestrator needs 'list' on pods there; or set "
                "backends.kubernetes.fatal_waiting_reasons: {}, pending_timeout_seconds: null "
                "and container_creating_timeout_seconds: null to stop reading pods)"
            ) from None
        views = [v for pod in api_field(answer, "items") or [] if (v := pod_view(pod)) is not None]
        self._pods.observe(namespace, views, now)
        by_job: dict[str, list[PodView]] = {}
        for view in views:
            by_job.setdefault(view.job, []).append(view)
        self._listed[namespace] = (now, by_job)
        return now, by_job

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        """Delete the Jobs and their pods (foreground propagation)."""
        self._check_handles(handles)
        for handle in handles:
            namespace, name = handle.id.split("/", 1)
            try:
                self.api.delete_namespaced_job(
                    name=name, namespace=namespace, propagation_policy="Foreground"
                )
            except Exception as exc:
                if getattr(exc, "status", None) != 404:
                    raise BackendError(
                        f"Could not delete Kubernetes Job {handle.id!r}: {exc}"
                    ) from None
            self._deleted.add(handle.id)
        self._next_read = float("-inf")  # the next status() reads the Jobs again
        self._backoff.reset()
