"""Cluster jobs through Dagster Pipes: HTCondor (schedd double) and Kubernetes (fake API).

The HTCondor schedd double really runs each submitted command and writes real job event
logs; the fake Kubernetes CoreV1Api really runs the pod's command with the pod's
environment. In both cases the worker is ``python -m rc2_platform.execution.pipes_worker``
reporting through ``dagster_pipes``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import kubernetes  # type: ignore[import-untyped]
import pytest

from rc2_platform.defs.pipes_htcondor import PipesHTCondorClient
from rc2_platform.defs.pipes_k8s import Rc2PipesK8sClient, pod_manifest
from rc2_platform.execution.backends.htcondor import HTCondorBackend, LocalScheddDouble
from rc2_platform.execution.backends.kubernetes import validate_manifest
from rc2_platform.execution.execution_config import KubernetesSettings, load_execution_config
from rc2_platform.execution.journal import Journal
from rc2_platform.graph.io import load_graph
from rc2_platform_tests.defs.test_execution_assets import (
    build_synthetic,
    record_graph,
    registered,
    run_tract,
)

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")


def _backend(name: str) -> dict[str, Any]:
    return {
        "ops": {"pipeline_outputs": {"ops": {"prepare_execution": {"config": {"backend": name}}}}}
    }


def _logs(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id)]


def test_htcondor_cluster_jobs_report_through_pipes_and_register(tmp_path: Path) -> None:
    repo, graph_path, run = build_synthetic(tmp_path, visits=2, detectors=2, patches=1)
    client = PipesHTCondorClient(backend=HTCondorBackend(LocalScheddDouble()), poll_seconds=0.05)
    with dg.instance_for_test() as instance:
        record_graph(instance, graph_path, run)
        result = run_tract(instance, repo, _backend("htcondor"), htcondor=client)
        assert result.success
        logs = _logs(instance, result.run_id)
    # Worker log lines came back through the Pipes message file.
    assert any("rc2 cluster job step1_HSC_0 starting" in m for m in logs)
    assert any('cluster step1_HSC_0: {"succeeded": 6}' in m for m in logs)
    graph = load_graph(graph_path)
    assert registered(repo, graph) == sum(1 for q in graph.quanta for _ in q.all_outputs())
    submits = list(Journal.for_run(repo, run).directory.rglob("*.sub"))
    assert submits and all("DAGSTER_PIPES_CONTEXT" in s.read_text() for s in submits)
    handles = [e["handle"] for e in Journal.for_run(repo, run).events("job_submitted")]
    assert handles and all(h["backend"] == "htcondor" for h in handles)


class FakeCoreApi:
    """Runs each created pod's first container command locally, with the pod's environment,
    and serves the pod as the API server would (``V1Pod`` with phase and terminated
    container). A cluster named in ``stuck`` gets, at its first pod only, that pod
    status and those events instead (``(V1PodStatus, [CoreV1Event])``): its command
    does not run."""

    def __init__(self, stuck: Mapping[str, tuple[Any, list[Any]]] | None = None) -> None:
        self.pods: dict[str, Any] = {}
        self.statuses: dict[str, Any] = {}
        self.events: dict[str, list[Any]] = {}
        self.deleted: list[str] = []
        self.stuck = dict(stuck or {})
        self.clusters: list[str] = []  # the cluster of each created pod

    def create_namespaced_pod(self, namespace: str, body: Any) -> Any:
        validate_manifest(pod_manifest(body))  # kubernetes-validate, strict
        name = body.metadata.name
        cluster = body.metadata.labels["rc2/cluster"]
        self.clusters.append(cluster)
        self.pods[name] = body
        if cluster in self.stuck:
            self.statuses[name], events = self.stuck.pop(cluster)
            self.events[name] = [_about(e, name) for e in events]
            return body
        container = body.spec.containers[0]
        env = {**os.environ, **{e.name: e.value for e in container.env or []}}
        proc = subprocess.run(container.command, env=env, cwd=container.working_dir, check=False)
        m = kubernetes.client
        terminated = m.V1ContainerStateTerminated(exit_code=proc.returncode)
        status = m.V1ContainerStatus(
            name=container.name, ready=False, restart_count=0, image=container.image,
            image_id="", state=m.V1ContainerState(terminated=terminated),
        )  # fmt: skip
        phase = "Succeeded" if proc.returncode == 0 else "Failed"
        self.statuses[name] = m.V1PodStatus(phase=phase, container_statuses=[status])
        return body

    def list_namespaced_pod(self, namespace: str, field_selector: str) -> Any:
        name = field_selector.split("=", 1)[1]
        if name not in self.pods or name in self.deleted:
            return kubernetes.client.V1PodList(items=[])
        pod = kubernetes.client.V1Pod(metadata=self.pods[name].metadata, status=self.statuses[name])
        return kubernetes.client.V1PodList(items=[pod])

    def list_namespaced_event(self, namespace: str, field_selector: str) -> Any:
        terms = dict(t.split("=", 1) for t in field_selector.split(","))
        assert terms["involvedObject.kind"] == "Pod", field_selector
        return kubernetes.client.CoreV1EventList(
            items=self.events.get(terms["involvedObject.name"], [])
        )

    def delete_namespaced_pod(self, name: str, namespace: str) -> None:
        self.deleted.append(name)


def _about(event: Any, pod_name: str) -> Any:
    """``event`` as an event of the pod ``pod_name`` (named once the pod exists)."""
    event.involved_object = kubernetes.client.V1ObjectReference(kind="Pod", name=pod_name)
    return event


def test_kubernetes_pods_carry_backend_spec_validate_strictly_and_report(tmp_path: Path) -> None:
    repo, graph_path, run = build_synthetic(tmp_path, visits=2, detectors=2, patches=1)
    api = FakeCoreApi()
    settings = KubernetesSettings(namespace="rc2-test", image="registry.example/rc2:1.0")
    client = Rc2PipesK8sClient(
        settings=settings, core_api=api, python=sys.executable, poll_interval=0.01
    )
    with dg.instance_for_test() as instance:
        record_graph(instance, graph_path, run)
        result = run_tract(instance, repo, _backend("kubernetes"), k8s=client)
        assert result.success
        logs = _logs(instance, result.run_id)
    assert any("rc2 cluster job step2_rings_9615_0 starting" in m for m in logs)
    config = load_execution_config()
    assert len(client.created) == 4 and sorted(api.deleted) == sorted(api.pods)
    for pod in client.created:
        manifest = pod_manifest(pod)
        validate_manifest(manifest)  # kubernetes-validate, strict
        container = manifest["spec"]["containers"][0]
        assert container["image"] == "registry.example/rc2:1.0"
        assert container["command"][1:4] == [
            "-m",
            "rc2_platform.execution.pipes_worker",
            "run-cluster",
        ]
        cluster = container["command"][container["command"].index("--cluster") + 1]
        labels = config.clustering[cluster.split("_", 1)[0]].tasks
        memory, cpus = config.job_resources(labels)
        assert container["resources"]["requests"] == {"memory": f"{memory}Mi", "cpu": str(cpus)}
        assert manifest["metadata"]["labels"]["rc2/cluster"] == cluster
        assert {e["name"] for e in container["env"]} >= {
            "DAGSTER_PIPES_CONTEXT",
            "DAGSTER_PIPES_MESSAGES",
        }
    graph = load_graph(graph_path)
    assert registered(repo, graph) == sum(1 for q in graph.quanta for _ in q.all_outputs())
