"""Helpers for the Dagster UI test: a `dagster dev` subprocess and headless Chromium.

Everything has a bounded timeout, and :func:`dagster_dev` always stops the whole process
group it started (webserver, daemon, code server and launched runs).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

REPO_TOP = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
#: Flags for Debian's chromium in a container: no sandbox, no GPU, no network chatter.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DAGSTER = Path(sys.executable).with_name("dagster")


def require_chromium() -> None:
    """Skip (or, under ``CI=true``, fail) when Chromium or Playwright is missing."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package (pip install -e '.[test]')")
    if not missing:
        return
    reason = "browser test needs " + " and ".join(missing)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: browser tests must run)")
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_local_home(home: Path) -> Path:
    """Make ``home`` a DAGSTER_HOME holding the top-level (SQLite) ``dagster.yaml``.

    The shipped file is copied unchanged (Dagster's default SQLite storage lives in the
    instance's own folder, so parallel tests never share storage). One test-only addition: the UI's one-time
    "Join the Dagster community" dialog is marked as seen (``.nux/nux.yaml``, Dagster's
    own flag file) so it does not cover the page.
    """
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO_TOP / "dagster.yaml", home / "dagster.yaml")
    (home / ".nux").mkdir(exist_ok=True)
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")
    return home


def dagster_cli(args: list[str], env: Mapping[str, str], log: Path, timeout: float = 120) -> None:
    """Run ``dagster ARGS`` from the checkout; fail the test with the log tail on error."""
    with log.open("ab") as out:
        proc = subprocess.run(
            [str(DAGSTER), *args],
            cwd=REPO_TOP,
            env=dict(env),
            stdout=out,
            stderr=out,
            timeout=timeout,
        )
    if proc.returncode != 0:
        pytest.fail(f"dagster {' '.join(args)} exited {proc.returncode}:\n{tail(log)}")


def tail(log: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file (for failure messages)."""
    if not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def wait_until_serving(
    url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120
) -> None:
    """Poll ``url/server_info`` until the webserver answers, the process dies, or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster dev exited with {proc.returncode} before serving:\n{tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(
        f"dagster dev did not answer {url}/server_info within {timeout:.0f} s:\n{tail(log)}"
    )


def stop_process_group(proc: subprocess.Popen[bytes], grace: float = 30) -> None:
    """Interrupt the process group like Ctrl-C, then kill whatever is left after ``grace``."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    # Children (daemon, code server, run workers) may outlive the parent: kill the group.
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@contextmanager
def dagster_dev(env: Mapping[str, str], log: Path, timeout: float = 120) -> Iterator[str]:
    """Run ``dagster dev -w workspace.yaml`` from the checkout; yield its base URL.

    The server runs in its own process group, which is always stopped on exit.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(DAGSTER), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO_TOP, env=dict(env), stdout=out, stderr=out, start_new_session=True
        )
    try:
        wait_until_serving(url, proc, log, timeout)
        yield url
    finally:
        stop_process_group(proc)


def fresh_profile(tmp_path: Path) -> Path:
    """An empty Chromium user-data-dir under ``tmp_path``."""
    profile = tmp_path / "chromium-profile"
    shutil.rmtree(profile, ignore_errors=True)
    profile.mkdir(parents=True)
    return profile


def pick_partition(page: Page, dimension: str, value: str, attempts: int = 3) -> None:
    """Choose ``value`` in the launchpad dialog's picker of partition ``dimension``.

    The picker is found by its dimension's label, never by position: under load a click
    made just before ("All" for another dimension, an earlier choice) may not have
    re-rendered yet, and "the first empty picker" is then the wrong one (CI once filtered
    the band list for a tract: "No matching partitions found"). Its list is searched only in
    the popover the picker's trigger controls (``aria-controls``), so a list still closing
    is never filtered. A long list renders its first items only: it is filtered when
    ``value`` is not shown. Done when the picker shows ``value`` as chosen; a click lost
    while the dialog re-renders is retried.
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect

    label = f'span[normalize-space(text())="{dimension}"]'
    row = page.get_by_role("dialog").locator(f"xpath=//{label}/../..")
    trigger = row.locator('[aria-haspopup="dialog"]')
    expect(trigger).to_have_count(1)
    chosen = row.locator(f'[title="{value}"]')
    for attempt in range(1, attempts + 1):
        try:
            if trigger.get_attribute("aria-expanded") != "true":
                trigger.click()
            expect(trigger).to_have_attribute("aria-expanded", "true", timeout=10_000)
            popover = page.locator(f'[id="{trigger.get_attribute("aria-controls")}"]')
            item = popover.locator(f'[role="menuitem"]:has([title="{value}"])')
            try:
                expect(item).to_be_visible(timeout=10_000)
            except AssertionError:
                popover.get_by_placeholder("Filter partitions").fill(value)
            item.click(timeout=15_000)
            expect(chosen.first).to_be_visible(timeout=15_000)
        except (AssertionError, PlaywrightError):
            if attempt == attempts:
                raise
        else:
            break
        finally:
            if trigger.get_attribute("aria-expanded") == "true":
                page.keyboard.press("Escape")  # closes the list, not the dialog
                expect(trigger).to_have_attribute("aria-expanded", "false")


def select_all_partitions(page: Page, dimension: str, done: str, attempts: int = 3) -> None:
    """Click "All" in the launchpad dialog's row of partition ``dimension``.

    The row is found by its dimension's label, as in :func:`pick_partition`. A click made
    while the dialog is still loading its partition keys is lost without a trace (CI once
    launched with no band chosen), so the click is repeated until the dialog shows the text
    ``done`` (e.g. "5 partitions"). "All" sets the whole range; clicking it again is harmless.
    """
    from playwright.sync_api import expect

    label = f'span[normalize-space(text())="{dimension}"]'
    row = page.get_by_role("dialog").locator(f"xpath=//{label}/../..")
    button = row.get_by_role("button", name="All", exact=True)
    expect(button).to_have_count(1)
    shown = page.get_by_role("dialog").get_by_text(done, exact=True)
    for attempt in range(1, attempts + 1):
        button.click()
        try:
            expect(shown).to_be_visible(timeout=10_000)
        except AssertionError:
            if attempt == attempts:
                raise
        else:
            return
