"""Execution backends: where cluster jobs run (local processes, HTCondor, Kubernetes).

All backends implement :class:`Backend` (``submit`` / ``status`` / ``cancel`` /
``wait``) over :class:`ClusterJob` and :class:`JobHandle`. :func:`make_backend` builds
one from the execution config.
"""

from __future__ import annotations

from typing import Any

from rc2_platform.errors import ConfigError

from ..execution_config import ExecutionConfig
from .base import TERMINAL_STATES, Backend, ClusterJob, JobHandle, JobState, JobStatus
from .local import LocalBackend

__all__ = [
    "TERMINAL_STATES",
    "Backend",
    "ClusterJob",
    "JobHandle",
    "JobState",
    "JobStatus",
    "LocalBackend",
    "make_backend",
]


def make_backend(
    config: ExecutionConfig,
    kind: str | None = None,
    *,
    schedd: Any = None,
    kubernetes_api: Any = None,
    kubernetes_core_api: Any = None,
) -> Backend:
    """Build the backend ``kind`` (default: ``config.backends.default``) from the config.

    Parameters
    ----------
    config : `ExecutionConfig`
        The execution config.
    kind : `str`, optional
        ``"local"``, ``"htcondor"`` or ``"kubernetes"``.
    schedd : `ScheddClient`, optional
        For HTCondor: the schedd client (a real ``HTCondorSchedd`` if omitted).
    kubernetes_api : `object`, optional
        For Kubernetes: a ``BatchV1Api``-like client; if omitted, the ``kubernetes``
        package's ``BatchV1Api`` and ``CoreV1Api`` are built from the in-cluster or
        kubeconfig configuration.
    kubernetes_core_api : `object`, optional
        For Kubernetes: a ``CoreV1Api``-like client (``list_namespaced_pod``), with which
        the backend fails Jobs whose pod can never start; without it (and with
        ``kubernetes_api`` given) pods are not read.

    Raises
    ------
    ConfigError
        For an unknown backend name, or Kubernetes without a usable client.
    """
    kind = kind or config.backends.default
    if kind == "local":
        local = config.backends.local
        return LocalBackend(
            max_workers=local.max_workers, launcher=local.launcher, preload=local.preload
        )
    if kind == "htcondor":
        from .htcondor import HTCondorBackend

        return HTCondorBackend(schedd, config.backends.htcondor, config.retry)
    if kind == "kubernetes":
        from .kubernetes import KubernetesBackend

        if kubernetes_api is None:
            kubernetes_api, default_core = _default_kubernetes_apis()
            kubernetes_core_api = kubernetes_core_api or default_core
        return KubernetesBackend(
            kubernetes_api, config.backends.kubernetes, core_api=kubernetes_core_api
        )
    raise ConfigError(f"Unknown execution backend {kind!r}; use local, htcondor or kubernetes.")


def _default_kubernetes_apis() -> tuple[Any, Any]:
    """``(BatchV1Api, CoreV1Api)`` from the in-cluster or kubeconfig configuration."""
    try:
        from kubernetes import client, config  # type: ignore[import-untyped]
    except ImportError:
        raise ConfigError(
            "The Kubernetes backend needs the 'kubernetes' package (installed with dagster-k8s)."
        ) from None
    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except Exception as exc:
            raise ConfigError(
                f"No Kubernetes configuration found (in-cluster or kubeconfig): {exc}"
            ) from None
    return client.BatchV1Api(), client.CoreV1Api()
