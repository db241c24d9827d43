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
  waiting their turn, not stuck;
* a pod on a node whose containers are still being created (``ContainerCreating``:
  a volume that cannot attach or mount, a Secret volume that does not exist, a network
  sandbox that cannot be made) for ``container_creating_timeout_seconds``, unless its
  latest event says its image is still being pulled. The cause is the pod's latest
  ``Warning`` event (``FailedMount``, ``FailedAttachVolume`` ...), read then (one
  ``list_namespaced_event`` for that pod); a missing Secret, ConfigMap or claim will
  not appear by itself (not retryable), anything else may pass on another node or later
  (retryable).

Time is the backend's ``clock`` (seconds, ``time.monotonic`` by default), so tests
never wait, and a restarted orchestrator starts its timers anew (it waits longer, never
less).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..execution_config import KubernetesSettings
from .base import JobState, JobStatus

__all__ = [
    "CREATING_REASONS",
    "JOB_NAME_LABELS",
    "PodEvent",
    "PodView",
    "PodWatch",
    "StuckPod",
    "api_field",
    "creating_cause",
    "pod_events",
    "pod_view",
    "read_pod_events",
]

#: Labels the Job controller puts on its pods naming the Job (new name first).
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
#: Container waiting reasons kubelet reports while it prepares a pod (volumes, sandbox,
#: image pull) before any container starts.
CREATING_REASONS = frozenset({"ContainerCreating", "PodInitializing"})
#: Event messages of a pod that cannot start because an object it names does not exist
#: (kubelet: ``secret "x" not found``, ``configmap "x" not found``, ``persistentvolumeclaim
#: "x" not found``, ``couldn't find key k in Secret ns/x``): waiting or retrying does not help.
_MISSING_OBJECT = re.compile(
    r'\b(secret|configmap|persistentvolumeclaim|serviceaccount)s? "[^"]*" not found'
    r"|couldn't find key",
    re.IGNORECASE,
)


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
    creating : `bool`
        The pod is on a node and none of its containers has started: each waits for one
        of :data:`CREATING_REASONS`, or kubelet reported none yet.
    """

    name: str
    uid: str
    job: str
    running: bool
    scheduled: bool
    unschedulable: str | None
    waiting: tuple[str, str] | None
    creating: bool = False


def _containers(status: Any) -> list[Any]:
    return [
        *(api_field(status, "init_container_statuses", "initContainerStatuses") or []),
        *(api_field(status, "container_statuses", "containerStatuses") or []),
    ]


def _creating(status: Any, scheduled: bool) -> bool:
    if not scheduled or api_field(status, "phase") != "Pending":
        return False
    for container in _containers(status):
        waiting = api_field(api_field(container, "state"), "waiting")
        if api_field(waiting, "reason") not in CREATING_REASONS:
            return False
    return True


def _waiting(status: Any) -> tuple[str, str] | None:
    for container in _containers(status):
        waiting = api_field(api_field(container, "state"), "waiting")
        reason = api_field(waiting, "reason")
        if reason:
            return str(reason), _one_line(api_field(waiting, "message") or "")
    return None


def pod_view(pod: Any, job: str | None = None) -> PodView | None:
    """Read a ``V1Pod`` (object or dict); None for a pod no Job owns.

    ``job`` names the owner of a pod no Job created (a Dagster Pipes pod: its own name).
    """
    meta = api_field(pod, "metadata")
    labels = api_field(meta, "labels") or {}
    job = next((labels[k] for k in JOB_NAME_LABELS if labels.get(k)), job)
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
        creating=_creating(status, scheduled),
    )


@dataclass(frozen=True)
class PodEvent:
    """One event of a pod (``CoreV1Event``): ``type`` is ``Normal`` or ``Warning``."""

    type: str
    reason: str
    message: str
    count: int
    time: str


def _event_time(event: Any) -> str:
    series = api_field(event, "series")
    for value in (
        api_field(series, "last_observed_time", "lastObservedTime"),
        api_field(event, "last_timestamp", "lastTimestamp"),
        api_field(event, "event_time", "eventTime"),
        api_field(event, "first_timestamp", "firstTimestamp"),
        api_field(api_field(event, "metadata"), "creation_timestamp", "creationTimestamp"),
    ):
        if value:
            return value.isoformat() if hasattr(value, "isoformat") else str(value)
    return ""


def pod_events(answer: Any) -> list[PodEvent]:
    """The events of a ``CoreV1EventList`` (object or dict), oldest first."""
    events = [
        PodEvent(
            type=str(api_field(e, "type") or ""),
            reason=str(api_field(e, "reason") or ""),
            message=_one_line(api_field(e, "message") or ""),
            count=int(api_field(e, "count") or 1),
            time=_event_time(e),
        )
        for e in api_field(answer, "items") or []
    ]
    return sorted(events, key=lambda e: e.time)


def read_pod_events(core_api: Any, namespace: str, pod: str) -> list[PodEvent]:
    """The events of one pod (``CoreV1Api.list_namespaced_event``), oldest first; one
    ``Warning`` saying why when they cannot be read (the pod is judged on that)."""
    try:
        answer = core_api.list_namespaced_event(
            namespace=namespace,
            field_selector=f"involvedObject.kind=Pod,involvedObject.name={pod}",
        )
    except Exception as exc:
        cause = f"its events could not be read ({exc}; the orchestrator needs 'list' on events)"
        return [PodEvent("Warning", "EventsUnreadable", cause, 1, "")]
    return pod_events(answer)


def creating_cause(events: Sequence[PodEvent]) -> tuple[str, bool] | None:
    """Why a pod is stuck creating its containers, from its events (oldest first).

    Returns ``(cause, retryable)``, or None while the latest event is kubelet's
    ``Pulling`` (a large image on a slow registry is not stuck; a pull that fails shows
    as ``ErrImagePull``). The cause is the latest ``Warning`` event; it is not retryable
    when it names a Secret, ConfigMap or claim that does not exist.
    """
    if events and events[-1].type == "Normal" and events[-1].reason == "Pulling":
        return None
    warnings = [e for e in events if e.type == "Warning"]
    if not warnings:
        return "no warning event (`kubectl describe pod` may say more)", True
    last = warnings[-1]
    times = f" (x{last.count})" if last.count > 1 else ""
    cause = f"{last.reason}: {last.message}{times}" if last.message else last.reason
    return cause, _MISSING_OBJECT.search(last.message) is None


@dataclass(frozen=True)
class StuckPod:
    """Why a Job is failed by :class:`PodWatch`: ``pod`` (None: no pod), the cause, and
    whether a new attempt (a new pod, maybe on another node) may start."""

    pod: str | None
    cause: str
    retryable: bool = False


class PodWatch:
    """Timers over the listed pods of rc2 Jobs, and the verdict per Job.

    Parameters
    ----------
    settings : `KubernetesSettings`
        ``fatal_waiting_reasons``, ``pending_timeout_seconds`` and
        ``container_creating_timeout_seconds``.

    Times are the backend's clock (seconds, monotonic) at each listing: a verdict only
    changes with a new listing, never on a listing older than the time it judges.
    """

    def __init__(self, settings: KubernetesSettings) -> None:
        self.settings = settings
        # namespace -> pod uid -> first seen waiting for a fatal reason / unschedulable
        self._fatal_since: dict[str, dict[str, float]] = {}
        self._unschedulable_since: dict[str, dict[str, float]] = {}
        self._creating_since: dict[str, dict[str, float]] = {}
        self._podless_since: dict[tuple[str, str], float] = {}  # (namespace, job) -> first seen
        self._scheduled: dict[str, set[str]] = {}  # namespace -> uids seen scheduled
        self._progress: dict[str, float] = {}  # namespace -> last time a new pod was scheduled

    @property
    def needed(self) -> bool:
        """Whether pods are read at all (not when both checks are switched off)."""
        return (
            bool(self.settings.fatal_waiting_reasons)
            or self.settings.pending_timeout_seconds is not None
            or self.settings.container_creating_timeout_seconds is not None
        )

    def observe(self, namespace: str, pods: Iterable[PodView], now: float) -> None:
        """Fold in one listing of the namespace's pods, made at ``now`` (starts and resets
        timers)."""
        was_fatal = self._fatal_since.get(namespace, {})
        was_unschedulable = self._unschedulable_since.get(namespace, {})
        was_creating = self._creating_since.get(namespace, {})
        fatal, unschedulable, creating, scheduled = {}, {}, {}, set()
        for pod in pods:
            if pod.creating:
                creating[pod.uid] = was_creating.get(pod.uid, now)
            if pod.waiting and pod.waiting[0] in self.settings.fatal_waiting_reasons:
                fatal[pod.uid] = was_fatal.get(pod.uid, now)
            if pod.unschedulable is not None:
                unschedulable[pod.uid] = was_unschedulable.get(pod.uid, now)
            if pod.scheduled:
                scheduled.add(pod.uid)
        self._fatal_since[namespace] = fatal
        self._unschedulable_since[namespace] = unschedulable
        self._creating_since[namespace] = creating
        if scheduled - self._scheduled.get(namespace, set()) or namespace not in self._progress:
            self._progress[namespace] = now
        self._scheduled[namespace] = scheduled

    def verdict(
        self,
        namespace: str,
        job: str,
        status: JobStatus,
        pods: Sequence[PodView],
        now: float,
        events: Callable[[str], Sequence[PodEvent]] | None = None,
    ) -> JobStatus | StuckPod:
        """The Job's status refined by its pods (listed at ``now``), or why it is stuck.

        ``status`` is what the Job object says (PENDING or RUNNING); with pods it becomes
        RUNNING when one runs, else PENDING. ``events`` reads a pod's events (by name),
        called only for a pod creating its containers longer than the timeout; without
        it such a pod is not judged.
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
            stuck = self._stuck(namespace, pod, now) or self._stuck_creating(
                namespace, pod, now, events
            )
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

    def _stuck_creating(
        self,
        namespace: str,
        pod: PodView,
        now: float,
        events: Callable[[str], Sequence[PodEvent]] | None,
    ) -> StuckPod | None:
        timeout = self.settings.container_creating_timeout_seconds
        since = self._creating_since.get(namespace, {}).get(pod.uid)
        if since is None or timeout is None or events is None or now - since < timeout:
            return None
        found = creating_cause(events(pod.name))
        if found is None:
            return None
        cause, retryable = found
        return StuckPod(pod.name, f"ContainerCreating for {now - since:.0f} s: {cause}", retryable)

    def forget(self, namespace: str, job: str) -> None:
        """Drop the timers of a Job that ended."""
        self._podless_since.pop((namespace, job), None)
