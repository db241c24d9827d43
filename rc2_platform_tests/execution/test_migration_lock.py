"""``rc2 migrate`` holds the repository's migration lock and keeps out of running RUNs.

Real processes hold the locks (a second migration, an orchestrator's RUN lock) and are
then killed with SIGKILL, as a crash would: the next migration takes over by itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rc2_platform.butler import Butler, run_state_directory
from rc2_platform.cli import main
from rc2_platform.errors import MigrationRequiredError
from rc2_platform.execution.migration_lock import MIGRATE_DIR
from rc2_platform.execution.run_lock import read_holder
from rc2_platform_tests.registry.test_migrate import build_1_0

HOLD = """
import sys, time
from pathlib import Path
root, what = sys.argv[1], sys.argv[2]
if what == "migrate":
    from rc2_platform.execution.migration_lock import migration_lock
    migration_lock(root, command="rc2 migrate " + root)
else:
    from rc2_platform.butler import run_state_directory
    from rc2_platform.execution.run_lock import RunLock
    RunLock.acquire(run_state_directory(root, "HSC/runs/x"), "HSC/runs/x", command="rc2 run x")
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def old_repo(db_url_sqlite_pg: str, tmp_path: Path) -> Path:
    """A repository whose registry (SQLite or PostgreSQL) is at schema 1.0."""
    root = tmp_path / "repo"
    Butler.create(root).close()
    (root / "registry.sqlite3").unlink()
    url = db_url_sqlite_pg
    if url.startswith("sqlite"):
        url = f"sqlite:///{root / 'registry.sqlite3'}"
    else:
        config = yaml.safe_load((root / "butler.yaml").read_text())
        config["registry"]["url"] = url
        (root / "butler.yaml").write_text(yaml.safe_dump(config))
    build_1_0(url, tmp_path)
    return root


@pytest.fixture
def holder(old_repo: Path) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def _hold(root: Path, what: str, procs: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root), what], stdout=subprocess.PIPE, text=True
    )
    procs.append(proc)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _still_old(root: Path) -> None:
    with pytest.raises(MigrationRequiredError):
        Butler(root)


def _crash(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_second_migration_is_refused_and_a_crashed_one_taken_over(
    old_repo: Path, holder: list[subprocess.Popen[str]]
) -> None:
    proc = _hold(old_repo, "migrate", holder)
    runner = CliRunner()
    refused = runner.invoke(main, ["migrate", str(old_repo)])
    assert refused.exit_code == 1, refused.output
    assert refused.output.count("\n") == 1, refused.output
    assert f"is being migrated by pid {proc.pid} on host" in refused.output
    assert f"'rc2 migrate {old_repo}'" in refused.output
    _still_old(old_repo)
    assert runner.invoke(main, ["migrate", str(old_repo), "--dry-run"]).exit_code == 0
    _crash(proc)  # the flock goes with the process; the JSON naming it stays
    assert read_holder(old_repo / MIGRATE_DIR).pid == proc.pid  # type: ignore[union-attr]
    done = runner.invoke(main, ["migrate", str(old_repo)])
    assert done.exit_code == 0, done.output
    assert "1.0 -> " in done.output
    assert read_holder(old_repo / MIGRATE_DIR) is None  # released
    with Butler(old_repo) as butler:
        assert len(butler.query_datasets("calexp", collections="HSC/runs/a")) == 4


def test_migration_is_refused_while_an_orchestrator_holds_a_run(
    old_repo: Path, holder: list[subprocess.Popen[str]]
) -> None:
    proc = _hold(old_repo, "run", holder)
    runner = CliRunner()
    refused = runner.invoke(main, ["migrate", str(old_repo)])
    assert refused.exit_code == 1, refused.output
    assert refused.output.count("\n") == 1, refused.output
    folder = run_state_directory(old_repo, "HSC/runs/x").name
    assert f"RUN folder {folder} of {old_repo} is held by pid {proc.pid}" in refused.output
    assert "'rc2 run x'" in refused.output
    _still_old(old_repo)
    assert read_holder(old_repo / MIGRATE_DIR) is None  # the migration lock was given back
    _crash(proc)  # a crashed orchestrator's RUN lock does not stop a migration
    done = runner.invoke(main, ["migrate", str(old_repo)])
    assert done.exit_code == 0, done.output
    with Butler(old_repo) as butler:
        assert len(butler.query_datasets("calexp", collections="HSC/runs/a")) == 4


def test_a_workflow_holding_a_run_needs_takeover(old_repo: Path) -> None:
    """A Dagster run's token in a RUN lock (no process to look at): refused, then passed
    over with --takeover once the operator says the workflow is gone."""
    from rc2_platform.execution.run_lock import RunLock

    directory = run_state_directory(old_repo, "HSC/runs/x")
    RunLock.acquire(directory, "HSC/runs/x", command="dagster run", owner="dagster:abc",
                    process=False)  # fmt: skip
    runner = CliRunner()
    refused = runner.invoke(main, ["migrate", str(old_repo)])
    assert refused.exit_code == 1, refused.output
    assert refused.output.count("\n") == 1, refused.output
    assert "is held by dagster:abc" in refused.output and "--takeover" in refused.output
    _still_old(old_repo)
    done = runner.invoke(main, ["migrate", str(old_repo), "--takeover"])
    assert done.exit_code == 0, done.output
    assert read_holder(directory).owner == "dagster:abc"  # type: ignore[union-attr]
