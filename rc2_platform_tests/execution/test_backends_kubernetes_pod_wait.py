"""One bare pod waited for (the Dagster Pipes route): how it ended, read from the official
client's ``V1Pod`` objects, and a wait against a changing pod on an injected clock."""

from __future__ import annotations

from typing import Any

import kubernetes  # type: ignore[import-untyped]

from rc2_platform.execution.backends import JobState
from rc2_platform.execution.backends.kubernetes_pod_wait import PodWaiter, pod_exit
from rc2_platform_tests.execution.k8s_double import SETTINGS, Clock

m = kubernetes.client


def _pod(phase: str, *states: Any, reason: str | None = None, message: str | None = None) -> Any:
    containers = [
        m.V1ContainerStatus(
            name=f"c{i}", image="img", image_id="", ready=False, restart_count=0, state=state
        )
        for i, state in enumerate(states)
    ]
    return m.V1Pod(
        metadata=m.V1ObjectMeta(name="p", uid="u"),
        status=m.V1PodStatus(
            phase=phase, reason=reason, message=message, container_statuses=containers or None
        ),
    )


def _ended(code: int, reason: str | None = None) -> Any:
    return m.V1ContainerState(
        terminated=m.V1ContainerStateTerminated(exit_code=code, reason=reason)
    )


RUNNING = m.V1ContainerState(running=m.V1ContainerStateRunning())


def test_pod_exit_reads_success_exit_codes_oom_and_eviction() -> None:
    assert pod_exit(_pod("Running", RUNNING)) is None
    assert pod_exit(_pod("Pending")) is None
    assert pod_exit(_pod("Succeeded", _ended(0))) == (0, "")
    assert pod_exit(_pod("Running", _ended(0), RUNNING)) is None  # one container still runs
    assert pod_exit(_pod("Failed", _ended(0), _ended(137, "OOMKilled"))) == (
        137,
        "container c1 exited with code 137: OOMKilled",
    )
    evicted = _pod("Failed", reason="Evicted", message="The node was low on resource: memory.")
    assert pod_exit(evicted) == (
        None,
        "pod failed: Evicted: The node was low on resource: memory.",
    )


class OnePod:
    """Serves one pod whose state the test sets, counting the reads."""

    def __init__(self, pods: list[Any]) -> None:
        self.pods = pods  # served in turn, the last one for ever
        self.reads = 0

    def list_namespaced_pod(self, namespace: str, field_selector: str) -> Any:
        assert field_selector == "metadata.name=p"
        pod = self.pods[min(self.reads, len(self.pods) - 1)]
        self.reads += 1
        return m.V1PodList(items=[pod] if pod is not None else [])


def test_wait_backs_off_while_the_pod_runs_and_keeps_the_exit_code() -> None:
    api = OnePod([_pod("Running", RUNNING)] * 5 + [_pod("Failed", _ended(137, "OOMKilled"))])
    clock, pauses = Clock(), []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        clock.now += seconds

    settings = SETTINGS.model_copy(update={"status_poll_seconds": 1, "status_poll_max_seconds": 4})
    status = PodWaiter(api, settings, clock=clock, sleep=sleep).wait("rc2-prod", "p", "step1_0")
    assert pauses == [1, 2, 4, 4, 4]
    assert status.state is JobState.FAILED and status.exit_code == 137 and status.retryable
    assert status.memory_exceeded  # the next attempt asks for more memory
    assert status.reason == (
        "cluster job step1_0 (Kubernetes pod rc2-prod/p) killed for memory: "
        "container c0 OOMKilled (exit code 137)"
    )


def test_a_pod_killed_for_memory_names_its_limit_and_other_failures_do_not_count() -> None:
    oom = _pod("Failed", _ended(137, "OOMKilled"))
    oom.spec = m.V1PodSpec(
        containers=[
            m.V1Container(
                name="c0",
                resources=m.V1ResourceRequirements(
                    requests={"memory": "2048Mi"}, limits={"memory": "3072Mi"}
                ),
            )
        ]
    )
    error = _pod("Failed", _ended(1, "Error"))
    statuses = [PodWaiter(OnePod([pod]), SETTINGS).wait("ns", "p", "c") for pod in (oom, error)]
    assert statuses[0].memory_exceeded and statuses[0].reason == (
        "cluster job c (Kubernetes pod ns/p) killed for memory: container c0 OOMKilled "
        "(exit code 137) at its memory limit 3072Mi (request 2048Mi)"
    )
    assert not statuses[1].memory_exceeded and statuses[1].exit_code == 1
    assert statuses[1].reason == (
        "cluster job c (Kubernetes pod ns/p) failed: container c0 exited with code 1: Error"
    )


def test_a_pod_deleted_under_the_wait_fails_it() -> None:
    status = PodWaiter(OnePod([None]), SETTINGS).wait("rc2-prod", "p", "step1_0")
    assert status.state is JobState.FAILED
    assert "the pod no longer exists" in (status.reason or "")
