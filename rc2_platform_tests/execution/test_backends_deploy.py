"""deploy/: YAML parses, dagster.yaml keys are ones Dagster knows, HTCondor/Docker settings exist."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.mark.parametrize("name", ["dagster.yaml", "helm/values.yaml"])
def test_deploy_yaml_files_parse(name: str) -> None:
    assert isinstance(yaml.safe_load((DEPLOY / name).read_text()), dict)


def test_dagster_yaml_passes_dagsters_instance_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster._core.instance.config import dagster_instance_config

    for var in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(var, "x")
    shutil.copy(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["storage"]["postgres"]["postgres_db"]["password"] == {
        "env": "DAGSTER_PG_PASSWORD"
    }
    assert config["run_coordinator"]["module"] == "rc2_platform.defs.run_queue"
    assert config["run_coordinator"]["class"] == "TractRunCoordinator"


def test_dagster_yaml_rejects_unknown_keys(tmp_path: Path) -> None:
    from dagster import DagsterInvalidConfigError
    from dagster._core.instance.config import dagster_instance_config

    (tmp_path / "dagster.yaml").write_text("storage_typo:\n  sqlite: {base_dir: x}\n")
    with pytest.raises(DagsterInvalidConfigError):
        dagster_instance_config(str(tmp_path))


def _validate(config_type: object, value: object) -> None:
    from dagster._core.instance.config import validate_config

    result = validate_config(config_type, value)
    assert result.success, [e.message for e in result.errors or []]


def test_run_coordinator_and_commented_k8s_launcher_match_their_schemas() -> None:
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_k8s import K8sRunLauncher

    text = (DEPLOY / "dagster.yaml").read_text()
    # Run limits moved to the instance's ``concurrency:`` section (Dagster 1.13); the
    # coordinator's own config, if any, must still match its schema.
    coordinator = yaml.safe_load(text)["run_coordinator"].get("config") or {}
    _validate(QueuedRunCoordinator.config_type(), coordinator)
    block = text.split("(begin)")[1].split("# --- K8sRunLauncher (end)")[0]
    yaml_lines = [
        line[2:]
        for line in block.splitlines()
        if line.startswith("#   ") or line.startswith("# run_launcher")
    ]
    launcher = yaml.safe_load("\n".join(yaml_lines))["run_launcher"]
    assert launcher["class"] == "K8sRunLauncher"
    _validate(K8sRunLauncher.config_type(), launcher["config"])


def test_helm_values_configure_user_code_launcher_and_queue() -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "rc2_platform.defs"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == "CustomRunCoordinator"
    custom = coordinator["config"]["customRunCoordinator"]
    assert (custom["module"], custom["class"]) == (
        "rc2_platform.defs.run_queue",
        "TractRunCoordinator",
    )
    from rc2_platform.defs.run_queue import TractRunCoordinator

    _validate(TractRunCoordinator.config_type(), custom["config"])
    assert {limit["key"] for limit in custom["config"]["tag_concurrency_limits"]} == {
        "dagster/backfill",
        "rc2/tract",
    }
    # The webserver and the daemon import the coordinator: they run this package's image.
    image = deployment["image"]["repository"]
    assert values["dagsterWebserver"]["image"]["repository"] == image
    assert values["dagsterDaemon"]["image"]["repository"] == image
    assert values["postgresql"]["enabled"] is False


def _condor_conf(name: str) -> dict[str, str]:
    pairs = {}
    for line in (DEPLOY / "htcondor" / name).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            pairs[key.strip()] = value.strip()
    return pairs


def test_htcondor_execution_point_uses_one_partitionable_slot() -> None:
    conf = _condor_conf("execution-point.conf")
    assert conf["SLOT_TYPE_1"] == "100%"
    assert conf["SLOT_TYPE_1_PARTITIONABLE"] == "True"
    assert conf["NUM_SLOTS_TYPE_1"] == "1"
    assert "DAGMAN_MAX_JOBS_IDLE" in _condor_conf("access-point.conf")


def test_dockerfile_is_slim_non_root_and_serves_the_code_location() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    user_lines = [line for line in text.splitlines() if line.startswith("USER ")]
    assert user_lines and user_lines[-1] != "USER root"
    assert '"rc2_platform.defs"' in text
