"""Pods of rc2's Kubernetes Jobs: a Job whose pod can never start fails instead of waiting.

A ``batch/v1 Job`` whose pod cannot pull its image, cannot create its container (a
missing Secret or ConfigMap) or that no node can take (a memory request larger than any
node, a node selector matching nothing) says ``active: 1`` forever. :class:`PodWatch`
reads the pods (one ``CoreV1Api.list_namespaced_pod`` per namespace, at most every
``pod_check_seconds``) and turns such a Job into FAILED, with the pod and the cause:

* a container waiting for one of ``fatal_waiting_reasons`` (``ImagePullBackOff`` ...)
  longer than that reason's grace;
* a pod the scheduler calls ``Unschedulable``, or a Job without a pod (a ResourceQuota
  refusing it), for ``pending_timeout_seconds`` during which no other rc2 pod of the
  namespace was scheduled: pods queueing behind running ones on a full cluster are
  waiting their turn, not stuck.

Time is the backend's ``clock`` (seconds, ``time.monotonic`` by default), so tests
never wait, and a restarted orchestrator starts its timers anew (it waits longer, never
less).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..execution_config import KubernetesSettings
from .base import JobState, JobStatus

__all__ = ["JOB_NAME_LABELS", "PodView", "PodWatch", "StuckPod", "api_field", "pod_view"]

#: Labels the Job controller puts on its pods naming the Job (new name first).
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")


def api_field(obj: Any, snake: str, camel: str | None = None) -> Any:
    """Read a field from a kubernetes-client model object or a plain dict."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(camel or snake, obj.get(snake))
    return getattr(obj, snake, None)


def _one_line(text: Any) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


@dataclass(frozen=True)
class PodView:
    """What the backend reads of one pod.

    Attributes
    ----------
    name, uid, job : `str`
        The pod's name and uid, and the name of the Job owning it.
    running : `bool`
        The pod's phase is ``Running``.
    scheduled : `bool`
        The pod is bound to a node (condition ``PodScheduled=True``).
    unschedulable : `str` or `None`
        The scheduler's message while ``PodScheduled=False`` with reason ``Unschedulable``.
    waiting : `tuple` [`str`, `str`] or `None`
        ``(reason, message)`` of the first waiting container (init containers first).
    """

    name: str
    uid: str
    job: str
    running: bool
    scheduled: bool
    unschedulable: str | None
    waiting: tuple[str, str] | None


def _waiting(status: Any) -> tuple[str, str] | None:
    containers = [
        *(api_field(status, "init_container_statuses", "initContainerStatuses") or []),
        *(api_field(status, "container_statuses", "containerStatuses") or []),
    ]
    for container in containers:
        waiting = api_field(api_field(container, "state"), "waiting")
        reason = api_field(waiting, "reason")
        if reason:
            return str(reason), _one_line(api_field(waiting, "message") or "")
    return None


def pod_view(pod: Any) -> PodView | None:
    """Read a ``V1Pod`` (object or dict); None for a pod no Job owns."""
    meta = api_field(pod, "metadata")
    labels = api_field(meta, "labels") or {}
    job = next((labels[k] for k in JOB_NAME_LABELS if labels.get(k)), None)
    if job is None:
        return None
    status = api_field(pod, "status")
    scheduled, unschedulable = False, None
    for condition in api_field(status, "conditions") or []:
        if api_field(condition, "type") != "PodScheduled":
            continue
        scheduled = api_field(condition, "status") == "True"
        if not scheduled and api_field(condition, "reason") == "Unschedulable":
            unschedulable = _one_line(api_field(condition, "message") or "Unschedulable")
    return PodView(
        name=str(api_field(meta, "name")),
        uid=str(api_field(meta, "uid") or api_field(meta, "name")),
        job=str(job),
        running=api_field(status, "phase") == "Running",
        scheduled=scheduled,
        unschedulable=unschedulable,
        waiting=_waiting(status),
    )


@dataclass(frozen=True)
class StuckPod:
    """Why a Job is failed by :class:`PodWatch`: ``pod`` (None: no pod) and the cause."""

    pod: str | None
    cause: str


class PodWatch:
    """Timers over the listed pods of rc2 Jobs, and the verdict per Job.

    Parameters
    ----------
    settings : `KubernetesSettings`
        ``fatal_waiting_reasons`` and ``pending_timeout_seconds``.

    Times are the backend's clock (seconds, monotonic) at each listing: a verdict only
    changes with a new listing, never on a listing older than the time it judges.
    """

    def __init__(self, settings: KubernetesSettings) -> None:
        self.settings = settings
        # namespace -> pod uid -> first seen waiting for a fatal reason / unschedulable
        self._fatal_since: dict[str, dict[str, float]] = {}
        self._unschedulable_since: dict[str, dict[str, float]] = {}
        self._podless_since: dict[tuple[str, str], float] = {}  # (namespace, job) -> first seen
        self._scheduled: dict[str, set[str]] = {}  # namespace -> uids seen scheduled
        self._progress: dict[str, float] = {}  # namespace -> last time a new pod was scheduled

    @property
    def needed(self) -> bool:
        """Whether pods are read at all (not when both checks are switched off)."""
        return bool(self.settings.fatal_waiting_reasons) or (
            self.settings.pending_timeout_seconds is not None
        )

    def observe(self, namespace: str, pods: Iterable[PodView], now: float) -> None:
        """Fold in one listing of the namespace's pods, made at ``now`` (starts and resets
        timers)."""
        was_fatal = self._fatal_since.get(namespace, {})
        was_unschedulable = self._unschedulable_since.get(namespace, {})
        fatal, unschedulable, scheduled = {}, {}, set()
        for pod in pods:
            if pod.waiting and pod.waiting[0] in self.settings.fatal_waiting_reasons:
                fatal[pod.uid] = was_fatal.get(pod.uid, now)
            if pod.unschedulable is not None:
                unschedulable[pod.uid] = was_unschedulable.get(pod.uid, now)
            if pod.scheduled:
                scheduled.add(pod.uid)
        self._fatal_since[namespace] = fatal
        self._unschedulable_since[namespace] = unschedulable
        if scheduled - self._scheduled.get(namespace, set()) or namespace not in self._progress:
            self._progress[namespace] = now
        self._scheduled[namespace] = scheduled

    def verdict(
        self, namespace: str, job: str, status: JobStatus, pods: Sequence[PodView], now: float
    ) -> JobStatus | StuckPod:
        """The Job's status refined by its pods (listed at ``now``), or why it is stuck.

        ``status`` is what the Job object says (PENDING or RUNNING); with pods it becomes
        RUNNING when one runs, else PENDING.
        """
        key = (namespace, job)
        timeout = self.settings.pending_timeout_seconds
        if not pods:
            if status.state is not JobState.PENDING or timeout is None:
                self._podless_since.pop(key, None)
                return status
            since = self._podless_since.setdefault(key, now)
            if now - max(since, self._progress.get(namespace, since)) >= timeout:
                return StuckPod(None, f"no pod for {now - since:.0f} s")
            return status
        self._podless_since.pop(key, None)
        for pod in pods:
            stuck = self._stuck(namespace, pod, now)
            if stuck is not None:
                return stuck
        running = any(pod.running for pod in pods)
        state = JobState.RUNNING if running else JobState.PENDING
        return JobStatus(state, None, None, status.attempts)

    def _stuck(self, namespace: str, pod: PodView, now: float) -> StuckPod | None:
        fatal_since = self._fatal_since.get(namespace, {}).get(pod.uid)
        if pod.waiting is not None and fatal_since is not None:
            reason, message = pod.waiting
            grace = self.settings.fatal_waiting_reasons.get(reason)
            waited = now - fatal_since
            if grace is not None and waited >= grace:
                cause = f"{reason}: {message}" if message else reason
                return StuckPod(pod.name, f"{cause} (for {waited:.0f} s)")
        timeout = self.settings.pending_timeout_seconds
        since = self._unschedulable_since.get(namespace, {}).get(pod.uid)
        if pod.unschedulable is None or since is None or timeout is None:
            return None
        if now - max(since, self._progress.get(namespace, since)) >= timeout:
            return StuckPod(pod.name, f"Unschedulable for {now - since:.0f} s: {pod.unschedulable}")
        return None

    def forget(self, namespace: str, job: str) -> None:
        """Drop the timers of a Job that ended."""
        self._podless_since.pop((namespace, job), None)
