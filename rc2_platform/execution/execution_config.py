"""The execution config: resources per task, clustering per step, retries, backends.

The default lives in ``rc2_platform/config/execution.yaml``; a site passes its own YAML
file (same schema, every key optional) to :func:`load_execution_config`. Unknown keys
are errors, so a typo (``request_memroy``) fails loudly and names the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rc2_platform.core.yaml_safe import read_yaml
from rc2_platform.errors import ConfigError

__all__ = [
    "DEFAULT_FATAL_WAITING_REASONS",
    "ClusteringRule",
    "DatastoreVolume",
    "ExecutionConfig",
    "HTCondorSettings",
    "KubernetesSettings",
    "LocalSettings",
    "ResourceRequest",
    "ResourcesConfig",
    "RetryPolicy",
    "default_execution_config_path",
    "load_execution_config",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResourceRequest(_Model):
    """Memory (MiB) and cores one quantum of a task needs; ``None`` = use the default."""

    request_memory_mb: int | None = Field(default=None, gt=0)
    request_cpus: int | None = Field(default=None, gt=0)


class ResourcesConfig(_Model):
    """Default request plus per-task-label overrides."""

    default: ResourceRequest = ResourceRequest(request_memory_mb=2048, request_cpus=1)
    tasks: dict[str, ResourceRequest] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _default_is_complete(self) -> ResourcesConfig:
        if self.default.request_memory_mb is None or self.default.request_cpus is None:
            raise ValueError("resources.default must set request_memory_mb and request_cpus")
        return self

    def for_task(self, label: str) -> tuple[int, int]:
        """Return ``(request_memory_mb, request_cpus)`` for one task label."""
        override = self.tasks.get(label, ResourceRequest())
        memory = override.request_memory_mb or self.default.request_memory_mb
        cpus = override.request_cpus or self.default.request_cpus
        assert memory is not None and cpus is not None  # checked by the validator
        return memory, cpus


class ClusteringRule(_Model):
    """How the quanta of one step are grouped into cluster jobs.

    ``group_by`` names the dimensions whose values define a cluster (all quanta of the
    step with the same values run in one job). ``tasks`` lists the step's task labels
    when the pipeline does not define steps itself. ``max_quanta_per_job`` splits
    oversized clusters.
    """

    group_by: list[str] = Field(min_length=1)
    tasks: list[str] = Field(default_factory=list)
    #: A group_by dimension a quantum lacks is read from this one instead (visit: exposure).
    equal_dimensions: dict[str, str] = Field(default_factory=dict)
    max_quanta_per_job: int | None = Field(default=None, gt=0)


class RetryPolicy(_Model):
    """Automatic retries: per-task counts and the memory escalation of memory-killed jobs.

    On HTCondor a job held for exceeding its memory is released with
    ``request_memory = min(max(base * memory_multiplier ** NumJobStarts,
    MemoryUsage * 1.2), max_memory_mb)`` while ``NumJobStarts <= max_retries``.
    """

    max_retries: int = Field(default=1, ge=0)
    tasks: dict[str, int] = Field(default_factory=dict)
    memory_multiplier: float = Field(default=2.0, ge=1.0)
    max_memory_mb: int = Field(default=32768, gt=0)
    #: Exception class names of failures that a new attempt cannot fix (the data itself is
    #: unusable, or an input file is cut short), so they are never retried: rerunning them
    #: only delays the report. Matched by exact class name, not by subclass.
    not_retried: frozenset[str] = Field(default=frozenset({"TaskDataError", "TruncatedFileError"}))

    def for_task(self, label: str) -> int:
        """Return the number of retries for one task label."""
        return self.tasks.get(label, self.max_retries)

    def retries_error(self, error_type: str | None) -> bool:
        """Whether a failure of this exception class is worth another attempt."""
        return error_type not in self.not_retried


class LocalSettings(_Model):
    """Local process pool."""

    max_workers: int = Field(default=2, gt=0)
    launcher: Literal["forkserver", "subprocess", "fork"] = Field(
        default="forkserver",
        description="forkserver: jobs are forked from a pre-imported server (fast start); "
        "subprocess: a new `rc2 run-cluster` process per job; fork: jobs are forked from "
        "the orchestrating process itself (what Dagster steps use, see docs/dagster.md)",
    )
    preload: list[str] = Field(
        default_factory=list, description="extra modules the fork server imports once"
    )


class HTCondorSettings(_Model):
    """HTCondor access point settings (``schedd_name: null`` = the local schedd)."""

    schedd_name: str | None = None
    universe: Literal["vanilla"] = "vanilla"
    requirements: str | None = None
    accounting_group: str | None = None
    accounting_group_user: str | None = None
    extra_submit: dict[str, str] = Field(default_factory=dict)
    hold_grace_seconds: float | None = Field(
        default=600.0,
        ge=0,
        description="a job held for another reason than memory (a file transfer failure, a "
        "missing working directory, a user's condor_hold, a site's periodic_hold) is removed "
        "and fails, not retried, after this many seconds held; 0 = at once, null = wait forever",
    )


class DatastoreVolume(_Model):
    """The PersistentVolumeClaim holding the repository/datastore, and where it is mounted."""

    pvc_name: str = "rc2-datastore"
    mount_path: str = "/datastore"
    read_only: bool = False


#: Container waiting reasons after which a pod never starts by itself, with the seconds
#: each may last first: a bad image name or a missing local image at once, a failed pull
#: (which kubelet retries, so a registry hiccup passes) after 5 minutes, a container that
#: cannot be created (a missing Secret or ConfigMap) after 2.
DEFAULT_FATAL_WAITING_REASONS: dict[str, float] = {
    "InvalidImageName": 0.0,
    "ErrImageNeverPull": 0.0,
    "ErrImagePull": 300.0,
    "ImagePullBackOff": 300.0,
    "CreateContainerConfigError": 120.0,
    "CreateContainerError": 120.0,
}


class KubernetesSettings(_Model):
    """Kubernetes settings for ``batch/v1 Job`` cluster jobs."""

    namespace: str = "rc2"
    image: str = "rc2-platform:latest"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    service_account: str | None = None
    datastore_volume: DatastoreVolume = DatastoreVolume()
    node_selector: dict[str, str] = Field(default_factory=dict)
    ttl_seconds_after_finished: int | None = Field(default=86400, ge=0)
    #: limits.memory = request * this factor (>= 1); CPU gets no limit (no throttling).
    memory_limit_factor: float = Field(default=1.0, ge=1.0)
    fatal_waiting_reasons: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: dict(DEFAULT_FATAL_WAITING_REASONS),
        description="container waiting reasons that mean a pod cannot start, with the "
        "seconds each may last before the Job fails and is deleted (a map given in a "
        "site config replaces this one)",
    )
    pending_timeout_seconds: float | None = Field(
        default=1800.0,
        gt=0,
        description="a pod the scheduler cannot place (or a Job that gets no pod) fails after "
        "this many seconds in which no other rc2 pod of the namespace was scheduled; "
        "null = wait forever",
    )
    container_creating_timeout_seconds: float | None = Field(
        default=600.0,
        gt=0,
        description="a pod on a node whose containers are not created after this many seconds "
        "(ContainerCreating: a volume that cannot attach or mount, a missing Secret volume) "
        "fails with its latest warning event, unless its image is still being pulled; "
        "null = wait forever",
    )
    pod_check_seconds: float = Field(
        default=15.0,
        ge=0,
        description="the pods of a namespace are listed at most this often (one call for all jobs)",
    )
    status_poll_seconds: float = Field(
        default=0.5,
        ge=0,
        description="Job statuses are read from the API server this long after a submission "
        "or a change of state; the pause doubles while nothing changes (0 = at every poll)",
    )
    status_poll_max_seconds: float = Field(
        default=5.0,
        ge=0,
        description="the longest pause between two reads of the Job statuses",
    )


class BackendsConfig(_Model):
    """Which backend to use by default, and each backend's settings."""

    default: Literal["local", "htcondor", "kubernetes"] = "local"
    local: LocalSettings = LocalSettings()
    htcondor: HTCondorSettings = HTCondorSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()


class ExecutionConfig(_Model):
    """The whole execution config (see ``rc2_platform/config/execution.yaml``)."""

    resources: ResourcesConfig = ResourcesConfig()
    clustering: dict[str, ClusteringRule] = Field(default_factory=dict)
    retry: RetryPolicy = RetryPolicy()
    processes_per_job: int = Field(default=1, gt=0)
    backends: BackendsConfig = BackendsConfig()

    def job_resources(self, task_labels: Iterable[str]) -> tuple[int, int]:
        """Return ``(request_memory_mb, request_cpus)`` for a job running these tasks.

        A job runs up to :attr:`processes_per_job` quanta at once, so the largest
        per-task request is multiplied by that number.
        """
        requests = [self.resources.for_task(label) for label in task_labels]
        if not requests:
            requests = [self.resources.for_task("")]
        memory = max(m for m, _ in requests) * self.processes_per_job
        cpus = max(c for _, c in requests) * self.processes_per_job
        return memory, cpus

    def job_max_retries(self, task_labels: Iterable[str]) -> int:
        """Return the retry count of a job: the largest of its tasks' counts."""
        return max(
            (self.retry.for_task(label) for label in task_labels), default=self.retry.max_retries
        )

    def step_for_task(self, label: str) -> str | None:
        """Return the clustering step listing ``label`` in its ``tasks``, if any."""
        for step, rule in self.clustering.items():
            if label in rule.tasks:
                return step
        return None


def default_execution_config_path() -> Path:
    """Return the path of the packaged default ``execution.yaml``."""
    return Path(str(resources.files("rc2_platform") / "config" / "execution.yaml"))


def load_execution_config(path: str | Path | None = None) -> ExecutionConfig:
    """Load and validate an execution config YAML file.

    Parameters
    ----------
    path : `str` or `pathlib.Path`, optional
        The YAML file; the packaged default when omitted.

    Returns
    -------
    config : `ExecutionConfig`
        The validated config.

    Raises
    ------
    ConfigError
        If the file is missing, is not YAML, or does not match the schema; the
        message names the file and the offending key.
    """
    file = Path(path) if path is not None else default_execution_config_path()
    try:
        data = read_yaml(file) or {}
    except FileNotFoundError:
        raise ConfigError(
            f"Execution config {file} does not exist; pass an existing YAML file."
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"Execution config {file} must be a YAML mapping, not {type(data).__name__}."
        )
    try:
        return ExecutionConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<top>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"Execution config {file} is invalid: {problems}.") from None
