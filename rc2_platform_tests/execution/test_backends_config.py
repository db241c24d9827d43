"""The execution config: packaged default, per-task resources, retries, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from rc2_platform.errors import ConfigError
from rc2_platform.execution.backends import LocalBackend, make_backend
from rc2_platform.execution.backends.htcondor import HTCondorBackend, LocalScheddDouble
from rc2_platform.execution.backends.kubernetes import KubernetesBackend
from rc2_platform.execution.execution_config import (
    HTCondorSettings,
    KubernetesSettings,
    load_execution_config,
)


def test_default_config_has_rc2_steps_and_per_task_memory() -> None:
    config = load_execution_config()
    assert config.clustering["step1"].group_by == ["instrument", "visit"]
    assert config.clustering["step2"].group_by == ["skymap", "tract", "patch"]
    assert config.step_for_task("calibrate") == "step1"
    assert config.resources.for_task("assembleCoadd") == (8192, 1)
    assert config.resources.for_task("unknownTask") == (2048, 1)
    assert config.backends.default == "local"


def test_job_resources_take_largest_task_times_processes(tmp_path: Path) -> None:
    file = tmp_path / "exec.yaml"
    file.write_text(
        "resources:\n  default: {request_memory_mb: 1000, request_cpus: 1}\n"
        "  tasks: {big: {request_memory_mb: 5000}, wide: {request_cpus: 3}}\n"
        "retry: {max_retries: 1, tasks: {big: 4}}\nprocesses_per_job: 2\n"
    )
    config = load_execution_config(file)
    assert config.job_resources(["big", "wide", "small"]) == (10000, 6)
    assert config.job_max_retries(["small", "big"]) == 4
    assert config.job_max_retries(["small"]) == 1


def test_typo_in_config_names_file_and_key(tmp_path: Path) -> None:
    file = tmp_path / "exec.yaml"
    file.write_text("retry:\n  max_retires: 3\n")
    with pytest.raises(ConfigError, match=r"exec\.yaml.*retry\.max_retires"):
        load_execution_config(file)


def test_missing_and_malformed_files_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_execution_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("resources: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_execution_config(bad)


def test_make_backend_builds_configured_backends() -> None:
    config = load_execution_config()
    local = make_backend(config)
    assert isinstance(local, LocalBackend) and local.max_workers == 2
    condor = make_backend(config, "htcondor", schedd=LocalScheddDouble())
    assert isinstance(condor, HTCondorBackend)
    with pytest.raises(ConfigError, match="slurm"):
        make_backend(config, "slurm")


def test_kubernetes_stuck_pod_settings_default_override_and_wiring(tmp_path: Path) -> None:
    packaged = load_execution_config().backends.kubernetes
    assert packaged == KubernetesSettings()  # the YAML file and the model agree
    assert packaged.fatal_waiting_reasons["InvalidImageName"] == 0
    assert packaged.fatal_waiting_reasons["ImagePullBackOff"] == 300
    assert packaged.pending_timeout_seconds == 1800
    file = tmp_path / "exec.yaml"
    file.write_text(
        "backends:\n  kubernetes:\n    fatal_waiting_reasons: {ImagePullBackOff: 60}\n"
        "    pending_timeout_seconds: null\n"
    )
    site = load_execution_config(file).backends.kubernetes
    assert site.fatal_waiting_reasons == {"ImagePullBackOff": 60}
    assert site.pending_timeout_seconds is None
    file.write_text("backends:\n  kubernetes:\n    fatal_waiting_reasons: {ErrImagePull: -1}\n")
    with pytest.raises(ConfigError, match="fatal_waiting_reasons.ErrImagePull"):
        load_execution_config(file)
    batch, core = object(), object()
    backend = make_backend(
        load_execution_config(), "kubernetes", kubernetes_api=batch, kubernetes_core_api=core
    )
    assert isinstance(backend, KubernetesBackend)
    assert backend.api is batch and backend.core_api is core


def test_htcondor_hold_grace_default_override_and_null(tmp_path: Path) -> None:
    packaged = load_execution_config().backends.htcondor
    assert packaged == HTCondorSettings()  # the YAML file and the model agree
    assert packaged.hold_grace_seconds == 600
    file = tmp_path / "exec.yaml"
    for text, value in (("0", 0), ("null", None), ("3600", 3600)):
        file.write_text(f"backends:\n  htcondor:\n    hold_grace_seconds: {text}\n")
        assert load_execution_config(file).backends.htcondor.hold_grace_seconds == value
    file.write_text("backends:\n  htcondor:\n    hold_grace_seconds: -1\n")
    with pytest.raises(ConfigError, match="hold_grace_seconds"):
        load_execution_config(file)
    backend = make_backend(load_execution_config(), "htcondor", schedd=LocalScheddDouble())
    assert isinstance(backend, HTCondorBackend)
    assert backend.settings.hold_grace_seconds == 600
