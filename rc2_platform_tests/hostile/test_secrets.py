"""No secret is ever stored or printed, whatever form the registry URL takes.

Passwords given as ``user:password@``, as ``?password=`` or ``?sslpassword=``,
percent-encoded, or containing ``@`` or ``:``; URLs that work, that cannot connect,
that have a bad port or cannot be parsed. Every file written under the test folder,
everything printed and everything logged (DEBUG) is searched for the secret.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from rc2_platform_tests.databases import POSTGRES_URL, scratch_database
from rc2_platform_tests.hostile.conftest import expect_cli_refusal, run_cli, tally

#: (name, userinfo and query to put in the URL, fragments of the secret that must never show)
WORKING = [
    ("userinfo", "root:alpha7bravo8@", "", ["alpha7bravo8"]),
    ("query", "root@", "?password=alpha7bravo8", ["alpha7bravo8"]),
    ("sslpassword", "root@", "?sslpassword=alpha7bravo8", ["alpha7bravo8"]),
    ("percent-encoded", "root:alpha7%40bravo8%3Acharlie9@", "",
     ["alpha7", "bravo8", "charlie9"]),
    ("with @", "root:alpha7@bravo8@", "", ["alpha7", "bravo8"]),
    ("with :", "root:alpha7:bravo8@", "", ["alpha7", "bravo8"]),
    ("query, encoded", "root@", "?password=alpha7%40bravo8", ["alpha7", "bravo8"]),
]  # fmt: skip
FAILING = [
    ("refused port", "postgresql+psycopg://root:alpha7bravo8@127.0.0.1:1/db", ["alpha7bravo8"]),
    ("bad port", "postgresql+psycopg://root:alpha7bravo8@127.0.0.1:abc/db", ["alpha7bravo8"]),
    ("port range", "postgresql+psycopg://root:alpha7bravo8@127.0.0.1:99999/db", ["alpha7bravo8"]),
    ("unparseable", "postgresql+psycopg//root:alpha7bravo8@x/db", ["alpha7bravo8"]),
    ("no scheme", "root:alpha7bravo8@127.0.0.1/db", ["alpha7bravo8"]),
    ("query, refused", "postgresql+psycopg://root@127.0.0.1:1/db?password=alpha7bravo8",
     ["alpha7bravo8"]),
    ("with @, refused", "postgresql+psycopg://root:alpha7@bravo8@127.0.0.1:1/db",
     ["alpha7", "bravo8"]),
    ("no driver", "nosuchdb://root:alpha7bravo8@127.0.0.1/db", ["alpha7bravo8"]),
    ("missing database", "postgresql+psycopg://root:alpha7bravo8@127.0.0.1:5432/rc2_nosuch_db",
     ["alpha7bravo8"]),
]  # fmt: skip


def _leaks(root: Path, text: str, fragments: list[str]) -> list[str]:
    found = [f"output: {f}" for f in fragments if f in text]
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {f}" for f in fragments if f.encode() in data]
    return found


@pytest.fixture
def server_database(tmp_path: Path) -> Iterator[sa.URL]:
    with scratch_database("postgresql", tmp_path) as url:
        yield sa.make_url(url)


@pytest.mark.parametrize(
    ("userinfo", "query", "fragments"), [c[1:] for c in WORKING], ids=[c[0] for c in WORKING]
)
def test_password_never_stored_nor_printed(
    server_database: sa.URL,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    userinfo: str,
    query: str,
    fragments: list[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    host = f"{server_database.host}:{server_database.port or 5432}"
    url = f"postgresql+psycopg://{userinfo}{host}/{server_database.database}{query}"
    repo = tmp_path / "repo"
    created = run_cli(["--log-level", "DEBUG", "create", repo, "--registry-url", url, "--json"])
    assert created.exit_code == 0, created.output
    env = {"RC2_DB_PASSWORD": "alpha7bravo8"}
    queried = run_cli(["--log-level", "DEBUG", "query-data-ids", repo, "instrument"], env=env)
    assert queried.exit_code == 0, queried.output
    wrong = run_cli(["collections", "chain", repo, "a/../b", "x"], env=env)
    text = created.output + queried.output + wrong.output + caplog.text
    leaks = _leaks(tmp_path, text, fragments)
    tally("wrong acceptance" if leaks else "clean")
    assert not leaks
    assert "RC2_DB_PASSWORD" in caplog.text  # the warning says how to pass the password


@pytest.mark.parametrize(
    ("url", "fragments"), [c[1:] for c in FAILING], ids=[c[0] for c in FAILING]
)
def test_password_never_printed_when_the_url_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, url: str, fragments: list[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    repo = tmp_path / "repo"
    result = expect_cli_refusal(["--log-level", "DEBUG", "create", repo, "--registry-url", url])
    assert not _leaks(tmp_path, result.output + caplog.text, fragments), result.output
    (repo / "butler.yaml").parent.mkdir(exist_ok=True)
    (repo / "butler.yaml").write_text(f"registry: {{url: '{url}'}}\n")
    opened = expect_cli_refusal(["query-data-ids", repo, "instrument"])
    assert not _leaks(tmp_path / "nothing", opened.output + caplog.text, fragments), opened.output


def test_server_url_of_the_suite_is_usable() -> None:
    assert sa.make_url(POSTGRES_URL).get_backend_name() == "postgresql"
