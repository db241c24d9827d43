"""``rc2 serve`` and ``rc2 tokens`` from the command line, and the operator's limits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from rc2_platform.butler import Butler
from rc2_platform.cli import main
from rc2_platform.errors import QueryLimitError
from rc2_platform.remote import RemoteButler
from rc2_platform.server.app import app_for_repository
from rc2_platform_tests.server.conftest import Served
from rc2_platform_tests.server.live import serving


def test_tokens_create_list_revoke(tmp_path: Path) -> None:
    Butler.create(tmp_path / "repo").close()
    runner = CliRunner()
    repo = str(tmp_path / "repo")
    made = runner.invoke(
        main,
        [
            "tokens",
            "create",
            repo,
            "--name",
            "alice",
            "--scope",
            "HSC/runs/RC2/*",
            "--expires",
            "7d",
        ],
    )
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    assert token.startswith("rc2_") and "shown only now" in made.stderr
    # rc2_<id>_<secret>: the secret is URL-safe base64 and may itself hold "_".
    _, token_id, secret = token.split("_", 2)
    stored = (tmp_path / "repo" / "_server" / "tokens.json").read_text()
    assert secret not in stored and "$argon2id$" in stored
    assert oct((tmp_path / "repo" / "_server" / "tokens.json").stat().st_mode)[-3:] == "600"

    listed = runner.invoke(main, ["tokens", "list", repo, "--json"])
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["name"], r["scopes"], r["state"]) for r in rows] == [
        (token_id, "alice", ["HSC/runs/RC2/*"], "active")
    ]
    assert secret not in listed.output

    revoked = runner.invoke(main, ["tokens", "revoke", repo, token_id])
    assert revoked.exit_code == 0 and token_id in revoked.stdout
    rows = json.loads(runner.invoke(main, ["tokens", "list", repo, "--json"]).stdout)
    assert rows[0]["state"] == "revoked"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "a", "--scope", "bad scope"], "not a collection pattern"),
        (["--name", "a", "--scope", "x", "--expires", "yesterday"], "neither a duration"),
        (["--name", "a", "--scope", "x", "--expires", "2001-01-01"], "not in the future"),
        (["--name", "a b", "--scope", "x"], "token name"),
    ],
)
def test_tokens_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    Butler.create(tmp_path / "repo").close()
    result = CliRunner().invoke(main, ["tokens", "create", str(tmp_path / "repo"), *args])
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "repo" / "_server" / "tokens.json").exists()


def test_tokens_need_a_repository(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["tokens", "list", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "no repository" in result.stderr
    result = CliRunner().invoke(main, ["tokens", "revoke", str(tmp_path), "abcdef012345"])
    assert result.exit_code == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_rc2_serve_runs_a_server(served_sqlite: Served, tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "server.yaml"
    config.write_text("limits:\n  page_rows: 10\nsigned_urls:\n  ttl_seconds: 60\n")
    rc2 = Path(sys.executable).parent / "rc2"
    proc = subprocess.Popen(
        [str(rc2), "serve", str(served_sqlite.root), "--name", "cli", "--port", str(port),
         "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RC2_TOKEN": served_sqlite.tokens["full"]},
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/cli"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.2)
        os.environ["RC2_TOKEN"], saved = served_sqlite.tokens["full"], os.environ.get("RC2_TOKEN")
        try:
            with RemoteButler(url) as remote:
                assert remote.limits["page_rows"] == 10
                raws = remote.query_datasets("raw", collections="HSC/raw/all")
        finally:
            if saved is None:
                del os.environ["RC2_TOKEN"]
            else:
                os.environ["RC2_TOKEN"] = saved
        assert len(raws) == len(
            served_sqlite.local.query_datasets("raw", collections="HSC/raw/all")
        )
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert f"serving cli at http://127.0.0.1:{port}/cli" in err
    assert served_sqlite.tokens["full"] not in err
    assert "sig=" not in err  # request log: paths only


def test_rc2_serve_bad_input(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", str(tmp_path / "none")])
    assert result.exit_code == 1 and "no repository" in result.stderr
    bad = tmp_path / "server.yaml"
    bad.write_text("limits:\n  max_rowz: 3\n")
    Butler.create(tmp_path / "repo").close()
    result = CliRunner().invoke(main, ["serve", str(tmp_path / "repo"), "--config", str(bad)])
    assert result.exit_code == 1 and "limits.max_rowz" in result.stderr
    result = CliRunner().invoke(main, ["serve", str(tmp_path / "repo"), "--name", "docs"])
    assert result.exit_code == 1 and "repository name" in result.stderr


def test_row_limit_and_body_limit(served_sqlite: Served) -> None:
    s = served_sqlite
    app = app_for_repository(s.root, "small", limits={"max_rows": 10, "max_body_bytes": 2048})
    headers = {"Authorization": f"Bearer {s.tokens['full']}"}
    with serving(app) as base:
        with RemoteButler(f"{base}/small", token=s.tokens["full"]) as remote:
            with pytest.raises(QueryLimitError, match="limit of 10"):
                remote.query_datasets("raw", collections="HSC/raw/all")
            assert (
                len(
                    remote.query_datasets("raw", collections="HSC/raw/all", where="exposure = 1012")
                )
                <= 10
            )
        body = {"dataset_type": "raw", "collections": ["HSC/raw/all"], "where": "x" * 4000}
        r = httpx.post(f"{base}/small/v1/query/datasets", headers=headers, json=body)
        assert r.status_code == 413 and r.json()["error"]["type"] == "QueryLimitError"

        def chunks():  # no Content-Length: the limit is enforced while reading
            yield b'{"dataset_type": "raw", "collections": ["HSC/raw/all"], "where": "'
            for _ in range(10):
                yield b"x" * 1000
            yield b'"}'

        r = httpx.post(
            f"{base}/small/v1/query/datasets",
            headers={**headers, "Content-Type": "application/json"},
            content=chunks(),
        )
        assert r.status_code == 413


@pytest.mark.parametrize(
    "args",
    [
        ["query-datasets", "{repo}", "raw", "-c", "HSC/defaults", "--where", "exposure > :e",
         "--bind", "e=1012"],
        ["query-datasets", "{repo}", "-c", "HSC/raw/all"],
        ["query-data-ids", "{repo}", "visit", "detector", "--where", "visit = 1012"],
        ["query-dimension-records", "{repo}", "visit", "--where", "band = 'i'"],
        ["dataset-types", "{repo}"],
        ["collections", "list", "{repo}"],
    ],
)  # fmt: skip
def test_cli_read_commands_take_a_url(
    served_sqlite: Served, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RC2_TOKEN", served_sqlite.tokens["full"])
    runner = CliRunner()
    local = runner.invoke(main, [a.format(repo=served_sqlite.root) for a in args] + ["--json"])
    remote = runner.invoke(main, [a.format(repo=served_sqlite.url) for a in args] + ["--json"])
    assert local.exit_code == remote.exit_code == 0, remote.output
    assert json.loads(remote.stdout) == json.loads(local.stdout)
    assert json.loads(local.stdout)


def test_cli_errors_over_a_url(served_sqlite: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("RC2_TOKEN", served_sqlite.tokens["full"])
    bad = runner.invoke(
        main,
        ["query-datasets", served_sqlite.url, "raw", "-c", "HSC/raw/all", "--where", "a = = 1"],
    )
    assert bad.exit_code == 1 and "^" in bad.stderr and "Traceback" not in bad.output
    write = runner.invoke(main, ["collections", "remove", served_sqlite.url, "HSC/raw/all"])
    assert write.exit_code == 1 and "read-only" in write.stderr
    monkeypatch.setenv("RC2_TOKEN", served_sqlite.tokens["raw_only"])
    denied = runner.invoke(
        main, ["query-datasets", served_sqlite.url, "summary", "-c", "u/alice/private"]
    )
    assert denied.exit_code == 1 and "may not read" in denied.stderr
    monkeypatch.delenv("RC2_TOKEN")
    anonymous = runner.invoke(main, ["dataset-types", served_sqlite.url])
    assert anonymous.exit_code == 1 and "needs a token" in anonymous.stderr
    down = runner.invoke(main, ["dataset-types", "http://127.0.0.1:9/none"])
    assert down.exit_code == 1 and "cannot reach" in down.stderr
