"""Reading changes nothing: no registry created or converted, read-only SQLite, read-only folders.

Query commands open the repository read-only: a missing or empty registry file, or one
that is not an SQLite database, is an error (never created, never converted to WAL), the files of a repository are byte-for-
byte and time-for-time the same after a series of queries, and a repository in a
folder the reader cannot write is queried all the same.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rc2_platform.butler import Butler
from rc2_platform_tests.butler.conftest import RUN, populate
from rc2_platform_tests.hostile.conftest import expect_cli_clean, expect_cli_refusal, tally

READ_COMMANDS = [
    ["query-data-ids", "{repo}", "instrument"],
    ["query-datasets", "{repo}", "summary", "-c", RUN],
    ["query-dimension-records", "{repo}", "detector"],
    ["dataset-types", "{repo}"],
    ["collections", "list", "{repo}"],
]


def _args(command: list[str], repo: Path) -> list[str]:
    return [str(repo) if a == "{repo}" else a for a in command]


def _state(root: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file (SQLite's -wal/-shm companions aside:
    any reader of a WAL database may create them in a writable folder)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if not p.name.endswith(("-wal", "-shm"))
    }


@pytest.fixture(scope="module")
def sqlite_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reading") / "repo"
    with Butler.create(root) as butler:
        populate(butler.registry)
        butler.put({"a": 1}, "summary", {"instrument": "HSC", "visit": 1, "detector": 0}, run=RUN)
    return root


@pytest.mark.parametrize(
    "command", READ_COMMANDS, ids=lambda c: c[0] + (c[1] if c[0] == "collections" else "")
)
@pytest.mark.parametrize("registry", ["missing", "empty", "not_sqlite"])
def test_missing_empty_or_non_sqlite_registry_is_an_error_and_stays_so(
    tmp_path: Path, command: list[str], registry: str
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "butler.yaml").write_text(
        "registry: {url: 'sqlite:///<butlerRoot>/registry.sqlite3'}\n"
    )
    if registry == "empty":
        (repo / "registry.sqlite3").touch()
    if registry == "not_sqlite":  # a file copied over it, not a database: exit 1, not 4
        (repo / "registry.sqlite3").write_text("registry: {url: sqlite:///x}\n")
    before = _state(repo)
    result = expect_cli_refusal(_args(command, repo))
    assert "registry.sqlite3" in result.output
    if registry == "not_sqlite":
        assert "is not an SQLite database" in result.output
    assert _state(repo) == before, "a read command created or changed a file"


def test_queries_change_no_file_of_the_repository(sqlite_repo: Path) -> None:
    before = _state(sqlite_repo)
    for command in READ_COMMANDS:
        result = expect_cli_clean(_args(command, sqlite_repo))
        assert result.exit_code == 0, result.output
    assert _state(sqlite_repo) == before


def test_a_read_only_folder_can_be_queried(sqlite_repo: Path) -> None:
    """As another user (root ignores permissions) in a folder it cannot write."""
    base = Path(tempfile.mkdtemp(prefix="rc2_ro_"))  # outside pytest's private 0700 folder
    try:
        repo = base / "repo"
        shutil.copytree(sqlite_repo, repo, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
        for path in [*repo.rglob("*"), repo]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        base.chmod(0o755)
        code = "import sys; from rc2_platform.cli import main; sys.exit(main())"
        command = [sys.executable, "-c", code, "query-data-ids", str(repo), "detector"]
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv: cannot drop write permission")
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        before = _state(repo)
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        clean = done.returncode == 0 and "Traceback" not in done.stderr
        tally("clean" if clean else "traceback")
        assert done.returncode == 0, done.stderr
        assert "HSC" in done.stdout
        assert _state(repo) == before
        assert not list(repo.glob("*-wal")) and not list(repo.glob("*-shm"))
    finally:
        for path in [base, *base.rglob("*")]:
            path.chmod(0o755)
        shutil.rmtree(base)


def test_a_read_only_open_of_postgresql_cannot_write(tmp_path: Path) -> None:
    """Read commands' PostgreSQL sessions are READ ONLY: the server itself refuses writes."""
    import sqlalchemy as sa

    from rc2_platform_tests.databases import scratch_database

    with scratch_database("postgresql", tmp_path) as url:
        with Butler.create(tmp_path / "repo", url) as butler:
            populate(butler.registry)
        with Butler(tmp_path / "repo", read_only=True) as butler:
            assert len(butler.query_data_ids(["detector"])) == 2
            with pytest.raises(sa.exc.DBAPIError, match="read-only transaction"):
                butler.registry.register_run("u/reader/attempt")
        with Butler(tmp_path / "repo") as butler:
            assert "u/reader/attempt" not in butler.registry.query_collections()
    tally("clean")


@pytest.mark.parametrize(
    "command", [["fsck", "{repo}", "--remove"], ["remove-runs", "{repo}", "x"]]
)
def test_writing_command_refuses_a_registry_that_is_not_sqlite(
    tmp_path: Path, command: list[str]
) -> None:
    """A writable open checks the file too: exit 1 naming it, the file untouched."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "butler.yaml").write_text(
        "registry: {url: 'sqlite:///<butlerRoot>/registry.sqlite3'}\n"
    )
    (repo / "registry.sqlite3").write_bytes(b"\x00" * 4096)
    before = _state(repo)
    result = expect_cli_refusal(_args(command, repo), match="is not an SQLite database")
    assert "registry.sqlite3" in result.output
    assert _state(repo) == before
