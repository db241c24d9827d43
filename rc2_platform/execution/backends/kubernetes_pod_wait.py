"""Wait for one bare pod to end, failing it when it can never start.

The Dagster Pipes route to Kubernetes (``rc2_platform.defs.pipes_k8s``) runs each
attempt of a cluster job as a bare ``v1 Pod`` (no Job). ``dagster_k8s``'s own wait fails
at once on ``ErrImagePull`` and waits up to a day on a missing Secret
(``CreateContainerConfigError``), a pod no node can take or a volume that cannot mount.
:class:`PodWaiter` applies the backend's rules instead (:class:`.kubernetes_pods.PodWatch`:
``fatal_waiting_reasons`` with their graces, ``pending_timeout_seconds``,
``container_creating_timeout_seconds``), so the same pod fails the same way on both
routes, naming the cluster job, the pod and the cause, and retryable or not alike. A pod
whose container was killed for memory (``OOMKilled``) ends ``memory_exceeded``, as a Job
of the backend does, so the next attempt's pod asks for more memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..execution_config import KubernetesSettings
from .base import JobState, JobStatus
from .kubernetes_failures import oom_killed
from .kubernetes_pods import PodWatch, StuckPod, api_field, pod_view, read_pod_events
from .polling import Backoff

__all__ = ["PodWaiter", "pod_exit"]


def pod_exit(pod: Any) -> tuple[int | None, str] | None:
    """``(exit code, cause)`` of a pod that ended, None while it has not.

    A pod has ended when its phase is ``Succeeded`` or ``Failed`` or every container has
    terminated (``restartPolicy: Never``). The cause names a failing container's exit
    code and reason (``OOMKilled``) and message; a pod that failed without a container
    exit (``Evicted``, ``DeadlineExceeded``) has exit code None and the pod's reason.
    """
    status = api_field(pod, "status")
    phase = api_field(status, "phase")
    if phase == "Succeeded":
        return 0, ""
    containers = api_field(status, "container_statuses", "containerStatuses") or []
    ended = [api_field(api_field(c, "state"), "terminated") for c in containers]
    if phase != "Failed" and not (ended and all(t is not None for t in ended)):
        return None
    for container, terminated in zip(containers, ended, strict=True):
        code = api_field(terminated, "exit_code", "exitCode")
        if terminated is None or not code:
            continue
        name = api_field(container, "name")
        words = [f"container {name} exited with code {code}"]
        words += [
            str(w) for w in (api_field(terminated, "reason"), api_field(terminated, "message")) if w
        ]
        return int(code), ": ".join(words)
    if phase == "Failed":
        words = [str(w) for w in (api_field(status, "reason"), api_field(status, "message")) if w]
        return None, "pod failed: " + (": ".join(words) or "no reason given")
    return 0, ""


class PodWaiter:
    """Poll one pod (``list_namespaced_pod`` by name) until it ends or can never start.

    Parameters
    ----------
    core_api : `object`
        A ``kubernetes.client.CoreV1Api`` (``list_namespaced_pod``,
        ``list_namespaced_event``).
    settings : `KubernetesSettings`
        When a pod that cannot start fails, and how often the pod is read
        (``status_poll_seconds`` growing to ``status_poll_max_seconds``).
    clock, sleep : callable, optional
        ``time.monotonic`` and ``time.sleep`` by default.
    """

    def __init__(
        self,
        core_api: Any,
        settings: KubernetesSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.core_api = core_api
        self.settings = settings
        self.clock = clock
        self.sleep = sleep

    def wait(self, namespace: str, pod_name: str, cluster: str) -> JobStatus:
        """The pod's final status: SUCCEEDED, or FAILED with one line naming the cluster
        job, the pod and the cause (``retryable`` as the backend decides it;
        ``memory_exceeded`` when a container was ``OOMKilled``)."""
        watch = PodWatch(self.settings)
        backoff = Backoff(self.settings.status_poll_seconds, self.settings.status_poll_max_seconds)
        where = f"cluster job {cluster} (Kubernetes pod {namespace}/{pod_name})"
        seen: tuple[Any, ...] | None = None
        while True:
            now = self.clock()
            answer = self.core_api.list_namespaced_pod(
                namespace=namespace, field_selector=f"metadata.name={pod_name}"
            )
            items = api_field(answer, "items") or []
            if not items:
                return JobStatus(
                    JobState.FAILED, None, f"{where}: the pod no longer exists (deleted, or "
                    "evicted and removed)", 1,
                )  # fmt: skip
            pod = items[0]
            ended = pod_exit(pod)
            if ended is not None:
                code, cause = ended
                if code == 0:
                    return JobStatus(JobState.SUCCEEDED, 0, None, 1)
                memory = oom_killed(pod)
                if memory is not None:
                    return JobStatus(
                        JobState.FAILED, memory.exit_code,
                        f"{where} killed for memory: {memory.describe()}", 1,
                        memory_exceeded=True,
                    )  # fmt: skip
                return JobStatus(JobState.FAILED, code, f"{where} failed: {cause}", 1)
            view = pod_view(pod, job=pod_name)
            views = [] if view is None else [view]
            watch.observe(namespace, views, now)
            pending = JobStatus(JobState.PENDING, None, None, 1)
            verdict = watch.verdict(
                namespace,
                pod_name,
                pending,
                views,
                now,
                lambda p: read_pod_events(self.core_api, namespace, p),
            )
            if isinstance(verdict, StuckPod):
                return JobStatus(
                    JobState.FAILED, None, f"{where} cannot start: {verdict.cause}", 1,
                    verdict.retryable,
                )  # fmt: skip
            state = None if view is None else (view.running, view.waiting, view.scheduled)
            self.sleep(backoff.next(changed=state != seen))
            seen = state
