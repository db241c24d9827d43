"""The shipped top-level dagster.yaml: what docs/dagster-ui.md says, and an instance opens."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

TOP = Path(__file__).parents[2]


def test_the_docs_quote_the_shipped_dagster_yaml() -> None:
    text = (TOP / "docs" / "dagster-ui.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    shipped = yaml.safe_load((TOP / "dagster.yaml").read_text())
    assert any(yaml.safe_load(block) == shipped for block in blocks)


def test_an_unmodified_copy_opens_with_storage_under_dagster_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(TOP / "dagster.yaml", home / "dagster.yaml")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "TractRunCoordinator"
        assert isinstance(coordinator, dg.QueuedRunCoordinator)
        # What the daemon reads: the instance's concurrency settings.
        concurrency = instance.get_concurrency_config()
        queue = concurrency.run_queue_config
        assert queue is not None and queue.max_concurrent_runs == 2
        assert {limit["key"] for limit in queue.tag_concurrency_limits} == {
            "rc2/tract",
        }
        assert concurrency.pool_config.default_pool_limit == 1
        assert instance.get_runs() == []
    assert (home / "history" / "runs.db").exists()
    assert not any(elsewhere.iterdir())  # nothing written where the command ran


def test_without_dagster_home_the_temporary_instance_of_dagster_dev_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dagster dev` / `dagster asset materialize` without DAGSTER_HOME, run from the checkout:
    a temporary home in the working folder, configured by the working folder's dagster.yaml."""
    from dagster._cli.utils import get_possibly_temporary_instance_for_cli

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copyfile(TOP / "dagster.yaml", checkout / "dagster.yaml")
    monkeypatch.chdir(checkout)
    with get_possibly_temporary_instance_for_cli("dagster dev") as instance:
        assert type(instance.run_coordinator).__name__ == "TractRunCoordinator"
        home = Path(instance.root_directory)
        assert home.parent == checkout and home.name.startswith(".tmp_dagster_home_")
        assert instance.get_runs() == []
        assert (home / "history" / "runs.db").exists()
