"""Kubernetes pods that cannot start or that fail, through Dagster Pipes: the Dagster step
fails (instead of waiting for a day) naming task, data ID, pod and cause, and retries
what may pass. Real Dagster instance and executor; the API double runs the other pods'
commands; the pods' statuses and events are the official client's model objects; graces
are configured tiny (the test never waits on a clock)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import kubernetes  # type: ignore[import-untyped]
import pytest

from rc2_platform.defs.pipes_k8s import Rc2PipesK8sClient
from rc2_platform.execution.execution_config import KubernetesSettings
from rc2_platform.graph.io import load_graph
from rc2_platform_tests.defs.test_execution_assets import (
    build_synthetic,
    record_graph,
    registered,
    run_tract,
)
from rc2_platform_tests.defs.test_execution_pipes import FakeCoreApi

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")

STUCK = "step1_HSC_0"
SECRET = 'secret "rc2-db" not found'
MULTI_ATTACH = 'Multi-Attach error for volume "pvc-3f1c" Volume is already exclusively attached'
SETTINGS = KubernetesSettings(
    namespace="rc2-test",
    image="registry.example/rc2:1.0",
    fatal_waiting_reasons={"ImagePullBackOff": 0, "CreateContainerConfigError": 0},
    pending_timeout_seconds=0.001,
    container_creating_timeout_seconds=0.001,
    status_poll_seconds=0,
)


def _status(
    *, waiting: str | None = None, message: str = "", unschedulable: str | None = None
) -> Any:
    m = kubernetes.client
    if unschedulable is not None:
        condition = m.V1PodCondition(
            type="PodScheduled", status="False", reason="Unschedulable", message=unschedulable
        )
        return m.V1PodStatus(phase="Pending", conditions=[condition])
    state = m.V1ContainerState(
        waiting=m.V1ContainerStateWaiting(reason=waiting or "ContainerCreating", message=message)
    )
    container = m.V1ContainerStatus(
        name="rc2", image=SETTINGS.image, image_id="", ready=False, restart_count=0, state=state
    )
    scheduled = m.V1PodCondition(type="PodScheduled", status="True")
    return m.V1PodStatus(phase="Pending", conditions=[scheduled], container_statuses=[container])


def _event(reason: str, message: str, kind: str = "Warning") -> Any:
    m = kubernetes.client
    return m.CoreV1Event(
        metadata=m.V1ObjectMeta(name=f"e-{reason.lower()}"),
        involved_object=m.V1ObjectReference(kind="Pod"),
        type=kind, reason=reason, message=message, count=3,
    )  # fmt: skip


def _evicted() -> Any:
    m = kubernetes.client
    return m.V1PodStatus(
        phase="Failed", reason="Evicted", message="The node was low on resource: memory."
    )


def _run(tmp_path: Path, stuck: tuple[Any, list[Any]]) -> tuple[Any, FakeCoreApi, list[str], int]:
    """Run the tract with the first pod of :data:`STUCK` in ``stuck``'s state: the Dagster
    result, the API double, the run's log messages, and the graph's outputs registered."""
    repo, graph_path, run = build_synthetic(tmp_path, visits=2, detectors=2, patches=1)
    api = FakeCoreApi({STUCK: stuck})
    client = Rc2PipesK8sClient(settings=SETTINGS, core_api=api, python=sys.executable)
    config = {
        "ops": {
            "pipeline_outputs": {
                "ops": {"prepare_execution": {"config": {"backend": "kubernetes"}}}
            }
        }
    }
    with dg.instance_for_test() as instance:
        record_graph(instance, graph_path, run)
        result = run_tract(instance, repo, config, k8s=client)
        logs = [e.user_message for e in instance.all_logs(result.run_id)]
    return result, api, logs, registered(repo, load_graph(graph_path))


NOT_RETRIED = {
    "image": (
        _status(waiting="ImagePullBackOff", message='Back-off pulling image "rc2:1.O"'),
        [],
        'ImagePullBackOff: Back-off pulling image "rc2:1.O" (for 0 s)',
    ),
    "secret-env": (
        _status(waiting="CreateContainerConfigError", message=SECRET),
        [],
        f"CreateContainerConfigError: {SECRET} (for 0 s)",
    ),
    "unschedulable": (
        _status(unschedulable="0/4 nodes are available: 4 Insufficient memory."),
        [],
        "Unschedulable for 0 s: 0/4 nodes are available: 4 Insufficient memory.",
    ),
    "secret-volume": (
        _status(),
        [_event("FailedMount", f'MountVolume.SetUp failed for volume "db" : {SECRET}')],
        f'ContainerCreating for 0 s: FailedMount: MountVolume.SetUp failed for volume "db" : '
        f"{SECRET} (x3)",
    ),
}


@pytest.mark.parametrize("case", sorted(NOT_RETRIED))
def test_a_pod_that_can_never_start_fails_its_step_naming_task_data_id_pod_and_cause(
    tmp_path: Path, case: str
) -> None:
    status, events, cause = NOT_RETRIED[case]
    result, api, logs, outputs = _run(tmp_path, (status, events))
    assert not result.success  # it ended instead of waiting for a day
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key.startswith("pipeline_outputs.run_step1["), failure.step_key
    assert failure.step_key.endswith("_0]"), failure.step_key
    text = failure.step_failure_data.error.to_string()
    line = (
        r"isr \{instrument=HSC, [^}]*visit=0[^}]*\} failed \(attempt 1\): job died before "
        rf"recording this quantum \(cluster job {STUCK} \(Kubernetes pod "
        r"rc2-test/(dagster-[a-z0-9-]+)\) cannot start: "
    )
    found = re.search(line + re.escape(cause), text)
    assert found is not None, text
    assert api.clusters.count(STUCK) == 1  # not retried: it would fail the same way
    assert found.group(1) in api.deleted  # the stuck pod is deleted
    assert any(f"cannot start: {cause}" in m for m in logs)  # in the step's log too
    assert outputs > 0  # the other visit's clusters ran and registered


@pytest.mark.parametrize("case", ["multi-attach", "evicted"])
def test_a_pod_that_may_start_on_a_second_attempt_is_retried_and_the_run_succeeds(
    tmp_path: Path, case: str
) -> None:
    stuck = (
        (_status(), [_event("FailedAttachVolume", MULTI_ATTACH)])
        if case == "multi-attach"
        else (_evicted(), [])
    )
    result, api, logs, outputs = _run(tmp_path, stuck)
    assert result.success
    assert api.clusters.count(STUCK) == 2
    cause = (
        f"cannot start: ContainerCreating for 0 s: FailedAttachVolume: {MULTI_ATTACH} (x3)"
        if case == "multi-attach"
        else "failed: pod failed: Evicted: The node was low on resource: memory."
    )
    assert any(f"cluster job {STUCK} (Kubernetes pod rc2-test/" in m and cause in m for m in logs)
    graph = load_graph(next(tmp_path.rglob("*.qgraph")))
    assert outputs == sum(1 for q in graph.quanta for _ in q.all_outputs())


def _oom_killed() -> Any:
    m = kubernetes.client
    ended = m.V1ContainerStateTerminated(exit_code=137, reason="OOMKilled")
    container = m.V1ContainerStatus(
        name="rc2", image=SETTINGS.image, image_id="", ready=False, restart_count=0,
        state=m.V1ContainerState(terminated=ended),
    )  # fmt: skip
    return m.V1PodStatus(phase="Failed", container_statuses=[container])


def test_a_pod_killed_for_memory_is_retried_as_a_pod_with_twice_the_memory(
    tmp_path: Path,
) -> None:
    result, api, logs, outputs = _run(tmp_path, (_oom_killed(), []))
    assert result.success
    pods = [p for p in api.pods.values() if p.metadata.labels["rc2/cluster"] == STUCK]
    memory = [
        (c.resources.requests["memory"], c.resources.limits["memory"], env["RC2_JOB_MEMORY_MB"])
        for c in (p.spec.containers[0] for p in pods)
        for env in [{e.name: e.value for e in c.env or []}]
    ]
    (first, first_limit, first_env), (second, second_limit, second_env) = memory
    base = int(first.removesuffix("Mi"))
    assert (first_limit, first_env) == (first, str(base))
    assert (second, second_limit, second_env) == (f"{2 * base}Mi",) * 2 + (str(2 * base),)
    assert any(
        f"cluster job {STUCK} (Kubernetes pod rc2-test/" in m
        and "killed for memory: container rc2 OOMKilled (exit code 137)" in m
        for m in logs
    )
    graph = load_graph(next(tmp_path.rglob("*.qgraph")))
    assert outputs == sum(1 for q in graph.quanta for _ in q.all_outputs())
