"""Why a Kubernetes Job or pod of rc2 failed: containers killed for memory, exit codes.

kubelet reports a container the kernel killed at its cgroup memory limit as terminated
with reason ``OOMKilled`` (``status.containerStatuses[].state.terminated``; after an
in-place restart the previous end is in ``lastState.terminated``), usually with exit code
137 (128 + SIGKILL). The Job's ``podFailurePolicy`` (:func:`pod_failure_rules`) fails the
Job at the first pod whose container exits with 137 instead of starting another pod with
the same memory; the backend then reads the Job's pods (:func:`failed_job_status`) and
reports the Job ``memory_exceeded``, so that the run-state machine's retry asks for more
memory. The Pipes route (bare pods) reads the same container states
(:func:`oom_killed`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from .base import JobState, JobStatus
from .kubernetes_pods import api_field

__all__ = [
    "MEMORY_KILL_REASON",
    "OOM_EXIT_CODE",
    "ContainerEnd",
    "container_ends",
    "failed_job_status",
    "oom_killed",
    "pod_failure_rules",
    "policy_exit_code",
]

#: Container exit code of a process killed by SIGKILL (the kernel OOM killer).
OOM_EXIT_CODE = 137
#: kubelet's ``terminated.reason`` of a container killed at its memory limit.
MEMORY_KILL_REASON = "OOMKilled"
#: The Job controller's message when a ``FailJob`` exit-code rule matched.
_POLICY_EXIT = re.compile(r"failed with exit code (\d+) matching FailJob rule")

_log = logging.getLogger(__name__)


def pod_failure_rules(container: str) -> list[dict[str, Any]]:
    """The ``podFailurePolicy.rules`` of every rc2 Job.

    Disruptions (node drain, preemption, eviction: condition ``DisruptionTarget``) do not
    count against ``backoffLimit``; a container ``container`` ending with exit code
    :data:`OOM_EXIT_CODE` fails the Job at once (a new pod would get the same memory and
    be killed again): the orchestrator retries it with more memory.
    """
    return [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {
            "action": "FailJob",
            "onExitCodes": {
                "containerName": container,
                "operator": "In",
                "values": [OOM_EXIT_CODE],
            },
        },
    ]


def policy_exit_code(reason: Any, message: Any) -> int | None:
    """The exit code a Job's ``Failed`` condition names when a ``FailJob`` rule failed it
    (reason ``PodFailurePolicy``), else None."""
    if reason != "PodFailurePolicy" or not message:
        return None
    found = _POLICY_EXIT.search(str(message))
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class ContainerEnd:
    """One container's end in a pod: its exit code, kubelet's reason and message, and the
    memory the pod spec gave it (``"6144Mi"``; None when the spec does not say)."""

    pod: str
    container: str
    exit_code: int | None
    reason: str | None
    message: str | None
    memory_limit: str | None = None
    memory_request: str | None = None

    @property
    def oom_killed(self) -> bool:
        """kubelet says the container was killed at its memory limit."""
        return self.reason == MEMORY_KILL_REASON

    def describe(self) -> str:
        """One line: ``container rc2 OOMKilled (exit code 137) at its memory limit 6144Mi
        (request 4096Mi)`` or ``container rc2 exited with code 1: Error``."""
        if self.oom_killed:
            line = f"container {self.container} {MEMORY_KILL_REASON} (exit code {self.exit_code})"
            if self.memory_limit:
                line += f" at its memory limit {self.memory_limit}"
            if self.memory_request:
                line += f" (request {self.memory_request})"
            return line
        words = [f"container {self.container} exited with code {self.exit_code}"]
        words += [w for w in (self.reason, self.message) if w]
        return ": ".join(words)


def _memory(pod: Any) -> dict[str, tuple[str | None, str | None]]:
    """Container name -> (memory limit, memory request) from the pod's spec."""
    spec = api_field(pod, "spec")
    out: dict[str, tuple[str | None, str | None]] = {}
    for container in [
        *(api_field(spec, "init_containers", "initContainers") or []),
        *(api_field(spec, "containers") or []),
    ]:
        resources = api_field(container, "resources")
        limits = api_field(resources, "limits") or {}
        requests = api_field(resources, "requests") or {}
        out[str(api_field(container, "name"))] = (limits.get("memory"), requests.get("memory"))
    return out


def container_ends(pod: Any) -> list[ContainerEnd]:
    """The failed ends of the pod's containers (init containers first): each terminated
    container (``state``, then ``lastState`` of a restarted one) with a non-zero exit code
    or killed for memory."""
    name = str(api_field(api_field(pod, "metadata"), "name"))
    status = api_field(pod, "status")
    memory = _memory(pod)
    ends: list[ContainerEnd] = []
    for container in [
        *(api_field(status, "init_container_statuses", "initContainerStatuses") or []),
        *(api_field(status, "container_statuses", "containerStatuses") or []),
    ]:
        cname = str(api_field(container, "name"))
        for state in (
            api_field(container, "state"),
            api_field(container, "last_state", "lastState"),
        ):
            terminated = api_field(state, "terminated")
            if terminated is None:
                continue
            code = api_field(terminated, "exit_code", "exitCode")
            reason = api_field(terminated, "reason")
            if not code and reason != MEMORY_KILL_REASON:
                continue
            limit, request = memory.get(cname, (None, None))
            message = api_field(terminated, "message")
            ends.append(
                ContainerEnd(
                    name, cname, None if code is None else int(code),
                    None if reason is None else str(reason),
                    None if not message else re.sub(r"\s+", " ", str(message)).strip(),
                    limit, request,
                )
            )  # fmt: skip
    return ends


def oom_killed(pod: Any) -> ContainerEnd | None:
    """The pod's container killed for memory (``OOMKilled``), or None."""
    return next((end for end in container_ends(pod) if end.oom_killed), None)


def _created(pod: Any) -> str:
    meta = api_field(pod, "metadata")
    value = api_field(meta, "creation_timestamp", "creationTimestamp")
    text = value.isoformat() if hasattr(value, "isoformat") else str(value or "")
    return f"{text}\0{api_field(meta, 'name')}"


def failed_job_status(
    core_api: Any, namespace: str, name: str, cluster: str, status: JobStatus
) -> JobStatus:
    """A FAILED Job's status explained by its pods (one ``list_namespaced_pod``).

    A pod with a container killed for memory makes the status ``memory_exceeded`` with
    that container's exit code; otherwise the newest pod's failed container gives the
    exit code. The reason becomes one line naming the cluster job, the Job, the pod and
    the container's end, followed by the Job's own condition (``BackoffLimitExceeded:
    ...``) unless the container was killed for memory. Pods that cannot be read (or are
    gone) leave ``status`` as it is, the reason saying so.
    """
    where = f"cluster job {cluster} (Kubernetes Job {namespace}/{name}"
    failure = status.reason or "Job failed"
    try:
        answer = core_api.list_namespaced_pod(
            namespace=namespace, label_selector=f"batch.kubernetes.io/job-name={name}"
        )
    except Exception as exc:
        _log.warning("could not read the pods of Kubernetes Job %s/%s: %s", namespace, name, exc)
        note = f" (its pods could not be read: {exc})"
        return JobStatus(
            JobState.FAILED, status.exit_code, f"{where}) failed: {failure}{note}",
            status.attempts, status.retryable, status.memory_exceeded,
        )  # fmt: skip
    pods = sorted(api_field(answer, "items") or [], key=_created)
    ends = [end for pod in pods for end in container_ends(pod)]
    memory = [end for end in ends if end.oom_killed]
    end = memory[-1] if memory else (ends[-1] if ends else None)
    if end is None:
        return JobStatus(
            JobState.FAILED, status.exit_code, f"{where}) failed: {failure}",
            status.attempts, status.retryable, status.memory_exceeded,
        )  # fmt: skip
    if end.oom_killed:
        reason = f"{where}, pod {end.pod}) killed for memory: {end.describe()}"
    else:
        reason = f"{where}, pod {end.pod}) failed: {end.describe()} ({failure})"
    return JobStatus(
        JobState.FAILED, end.exit_code, reason, status.attempts, status.retryable,
        status.memory_exceeded or end.oom_killed,
    )  # fmt: skip
