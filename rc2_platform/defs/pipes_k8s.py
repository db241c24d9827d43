"""Cluster jobs on Kubernetes through ``dagster_k8s.PipesK8sClient``.

The pod is the backend's: :func:`~rc2_platform.execution.backends.kubernetes.build_job_manifest`
gives the pod template (image, command, per-task resource requests, labels, the
datastore PersistentVolumeClaim), which goes to ``PipesK8sClient`` as ``base_pod_meta`` /
``base_pod_spec``; ``dagster_k8s.pipes.build_pod_body`` adds the Pipes bootstrap
variables. Messages come back through a file in the job's folder on the datastore volume
(``PipesFileMessageReader``), so the repository must be mounted at the same path in the
pods as on the orchestrating side (``backends.kubernetes.datastore_volume.mount_path``).

The client creates, waits for and deletes the pod itself, following the steps of
``PipesK8sClient.run``, through ``core_api`` when given (tests, or a caller holding its
own ``CoreV1Api``), else a ``CoreV1Api`` from the client's kube config (in-cluster or
kubeconfig, as ``PipesK8sClient`` loads it). The wait is the backend's
(:class:`~rc2_platform.execution.backends.kubernetes_pod_wait.PodWaiter`), not
``dagster_k8s``'s ``wait_for_pod`` (which fails on the first ``ErrImagePull`` and waits
up to a day on a missing Secret, a pod no node can take or a volume that cannot mount):
a pod that can never start fails after the same graces as on the backend, naming the
cluster job, the pod and the cause; the step then fails naming each quantum's task and
data ID with that cause, retried or not as on the backend. A pod whose container was
killed for memory (``OOMKilled``) is ``memory_exceeded``: the next attempt's pod requests
(and is limited to) the escalated memory the run-state machine gives its cluster job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg
import kubernetes  # type: ignore[import-untyped]
from dagster_k8s import PipesK8sClient
from dagster_k8s.pipes import build_pod_body, get_pod_name

from rc2_platform.execution.backends import ClusterJob, JobHandle, JobState, JobStatus
from rc2_platform.execution.backends.kubernetes import build_job_manifest
from rc2_platform.execution.backends.kubernetes_pod_wait import PodWaiter
from rc2_platform.execution.execution_config import KubernetesSettings

__all__ = ["Rc2PipesK8sClient", "pod_manifest"]


def pod_template(
    job: ClusterJob, settings: KubernetesSettings
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(base_pod_meta, base_pod_spec)`` of a cluster job, from the backend's Job manifest."""
    manifest = build_job_manifest(job, settings)
    template = manifest["spec"]["template"]
    meta = {
        "labels": dict(template["metadata"]["labels"]),
        "annotations": dict(manifest["metadata"]["annotations"]),
    }
    return meta, dict(template["spec"])


def pod_manifest(pod: Any) -> dict[str, Any]:
    """A ``V1Pod`` (as built by ``build_pod_body``) as a plain ``v1 Pod`` manifest."""
    body = kubernetes.client.ApiClient().sanitize_for_serialization(pod)
    return {"apiVersion": "v1", "kind": "Pod", **body}


class Rc2PipesK8sClient(PipesK8sClient):
    """``PipesK8sClient`` running rc2 cluster jobs as pods.

    Parameters
    ----------
    settings : KubernetesSettings, optional
        Namespace, image, volume, node selector (the execution config's by default).
    core_api : object, optional
        A ``kubernetes.client.CoreV1Api``-like object; when given no kube config is loaded.
    python : str
        Python inside the image, running ``-m rc2_platform.execution.pipes_worker``.
    poll_interval : float
        Kept for ``PipesK8sClient``; the pod is read as the settings say
        (``status_poll_seconds`` growing to ``status_poll_max_seconds``).
    """

    def __init__(
        self,
        settings: KubernetesSettings | None = None,
        core_api: Any = None,
        python: str = "python",
        poll_interval: float = 5.0,
    ) -> None:
        super().__init__(poll_interval=poll_interval)
        self.settings = settings
        self.core_api = core_api
        self.python = python
        #: Pod bodies created through an injected ``core_api`` (for inspection).
        self.created: list[Any] = []

    def worker_prefix(self) -> list[str]:
        """Command prefix of the Pipes-aware worker inside the image."""
        return [self.python, "-m", "rc2_platform.execution.pipes_worker"]

    def run_cluster(
        self,
        *,
        context: dg.OpExecutionContext,
        job: ClusterJob,
        settings: KubernetesSettings | None = None,
        extras: Mapping[str, Any] | None = None,
        on_submitted: Callable[[JobHandle], None] | None = None,
    ) -> tuple[JobHandle, JobStatus, list[dict[str, Any]]]:
        """Run one cluster job as a pod; return its handle, final status and worker reports."""
        settings = settings or self.settings or KubernetesSettings()
        meta, spec = pod_template(job, settings)
        job.log_dir.mkdir(parents=True, exist_ok=True)
        reader = dg.PipesFileMessageReader(str(job.log_dir / "pipes_messages.jsonl"))
        original = self.message_reader
        self.message_reader = reader
        pod_name = get_pod_name(context.run_id, context.op.name)
        handle = JobHandle(
            f"{settings.namespace}/{pod_name}", job.name, "kubernetes", {"pod": pod_name}
        )
        try:
            if on_submitted is not None:
                on_submitted(handle)
            invocation, status = self._run_pod(context, settings, job, pod_name, meta, spec, extras)
        except Exception as exc:  # the API refused the pod (403, 409, quota), transport errors
            line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            reason = (
                f"cluster job {job.name} (Kubernetes pod {settings.namespace}/{pod_name}) "
                f"could not run: {line}"
            )
            context.log.error(reason)
            return handle, JobStatus(JobState.FAILED, None, reason, 1), []
        finally:
            self.message_reader = original
        if status.state is not JobState.SUCCEEDED:
            context.log.error(status.reason or f"cluster job {job.name}: pod {pod_name} failed")
        reports = [m for m in invocation.get_custom_messages() if isinstance(m, dict)]
        return handle, status, reports

    def _api(self) -> Any:
        if self.core_api is not None:
            return self.core_api
        self._load_k8s_config()  # PipesK8sClient's: in-cluster, kubeconfig file or context
        return kubernetes.client.CoreV1Api()

    def _run_pod(
        self,
        context: dg.OpExecutionContext,
        settings: KubernetesSettings,
        job: ClusterJob,
        pod_name: str,
        meta: dict[str, Any],
        spec: dict[str, Any],
        extras: Mapping[str, Any] | None,
    ) -> tuple[dg.PipesClientCompletedInvocation, JobStatus]:
        core_api = self._api()
        namespace = settings.namespace
        with dg.open_pipes_session(
            context=context,
            extras=dict(extras or {}),
            context_injector=self.context_injector,
            message_reader=self.message_reader,
        ) as session:
            pod = build_pod_body(
                pod_name=pod_name, image=None, command=None,
                env_vars={**session.get_bootstrap_env_vars(), **(self.env or {})},
                base_pod_meta=meta, base_pod_spec=spec,
            )  # fmt: skip
            self.created.append(pod)
            core_api.create_namespaced_pod(namespace, pod)
            try:
                status = PodWaiter(core_api, settings).wait(namespace, pod_name, job.name)
            finally:
                try:
                    core_api.delete_namespaced_pod(pod_name, namespace)
                except Exception as exc:
                    if getattr(exc, "status", None) != 404:
                        context.log.warning(
                            f"could not delete Kubernetes pod {namespace}/{pod_name}: {exc}; "
                            f"`kubectl delete pod -n {namespace} {pod_name}`"
                        )
        return dg.PipesClientCompletedInvocation(session), status

    def launcher(
        self,
        context: dg.OpExecutionContext,
        settings: KubernetesSettings,
        extras: Mapping[str, Any] | None = None,
        reports: list[dict[str, Any]] | None = None,
    ) -> Callable[[ClusterJob, Callable[[JobHandle], None]], tuple[JobHandle, JobStatus]]:
        """A launcher for :func:`rc2_platform.execution.stages.run_cluster_job`."""

        def launch(
            job: ClusterJob, on_submitted: Callable[[JobHandle], None]
        ) -> tuple[JobHandle, JobStatus]:
            # Kubernetes retries are the orchestrator's (one pod per attempt).
            job = dataclasses.replace(job, max_retries=0)
            handle, status, got = self.run_cluster(
                context=context,
                job=job,
                settings=settings,
                extras=extras,
                on_submitted=on_submitted,
            )
            if reports is not None:
                reports.extend(got)
            return handle, status

        return launch
