"""The Dagster web UI, driven in headless Chromium against `dagster dev` on the tiny survey.

An operator's path: open the asset catalog, find ``raws``, open it, launch a materialization
of partition ``g|9813`` from the launchpad dialog, and watch the run page report success.
The run goes through the real queued run coordinator, the daemon and the default run
launcher that `dagster dev` starts, and the check of success is the run's status in the
instance plus the ingested raws in the repository.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import pytest

from rc2_platform.butler import Butler
from rc2_platform.simulate import SimulationResult
from rc2_platform_tests.defs import ui_helpers as ui

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BAND, TRACT = "g", "9813"
PARTITION = f"{BAND}|{TRACT}"
#: Every UI wait; the whole test stays under about three minutes even when all time out.
UI_TIMEOUT_MS = 30_000
RUN_TIMEOUT_S = 120.0


def _wait_for_run(home: Path, run_id: str, timeout: float = RUN_TIMEOUT_S) -> dg.DagsterRun:
    """Poll the instance until ``run_id`` finishes; fail on timeout."""
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = instance.get_run_by_id(run_id)
            if run is not None and run.is_finished:
                return run
            time.sleep(1.0)
        run = instance.get_run_by_id(run_id)
        pytest.fail(
            f"run {run_id} not finished after {timeout:.0f} s (status {run and run.status})"
        )
    finally:
        instance.dispose()


def _launch_raws_partition_in_ui(url: str, home: Path, tmp_path: Path) -> str:
    """Drive the UI from the catalog to a launched ``raws`` run; return its run ID."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(ui.fresh_profile(tmp_path)),
            executable_path=str(ui.CHROMIUM),
            headless=True,
            args=ui.CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)
            try:
                # The asset catalog lists the ingest assets; filter it down to raws.
                page.goto(f"{url}/assets")
                expect(page.get_by_test_id("checkbox-instrument")).to_have_count(1)
                # The search box is a CodeMirror editor around a textarea with that label.
                search = page.locator(".CodeMirror").filter(
                    has=page.get_by_label("Search and filter assets")
                )
                search.click()
                expect(page.get_by_label("Search and filter assets")).to_be_focused()
                page.keyboard.type("raws")
                expect(search).to_contain_text("raws")
                page.keyboard.press("Enter")
                expect(page.get_by_test_id("checkbox-instrument")).to_have_count(0)
                expect(page.get_by_test_id("checkbox-raws")).to_have_count(1)
                page.mouse.click(700, 700)  # close the search suggestions
                page.locator('a[href="/assets/raws"]').first.click()

                # The asset page; Materialize… opens the launchpad with one picker per dimension.
                expect(page).to_have_url(f"{url}/assets/raws")
                page.get_by_role("button", name="Materialize…").click()
                expect(page.get_by_text("Launch runs to materialize raws")).to_be_visible()
                ui.pick_partition(page, "band", BAND)
                ui.pick_partition(page, "tract", TRACT)
                expect(
                    page.get_by_role("dialog").get_by_text("1 partition", exact=True)
                ).to_be_visible()
                page.get_by_role("button", name="Launch 1 run").click()

                # The toast links to the new run's page.
                view = page.get_by_role("link", name="View", exact=True)
                href = view.get_attribute("href") or ""
                assert href.startswith("/runs/"), href
                view.click()
                expect(page).to_have_url(f"{url}{href}")
                run_id = href.removeprefix("/runs/")
                expect(page.get_by_text(f"partition: {PARTITION}")).to_be_visible()

                run = _wait_for_run(home, run_id)
                assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
                # The run page reports the success too (reloaded: no reliance on live push).
                page.reload()
                expect(page.get_by_text("Success", exact=True).first).to_be_visible()
                expect(page.get_by_text("RUN_SUCCESS").first).to_be_visible()
                return run_id
            finally:
                page.screenshot(path=str(tmp_path / "raws_g_9813_run.png"))
                (tmp_path / "last_page.html").write_text(page.content())
        finally:
            browser.close()


def test_ui_launches_a_raws_partition_and_reports_success(
    tiny_survey: SimulationResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ui.require_chromium()
    home = ui.write_local_home(tmp_path / "dagster_home")
    repo = tmp_path / "repo"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("RC2_REPO", str(repo))
    monkeypatch.setenv("RC2_BOOTSTRAP", str(tiny_survey.bootstrap))
    monkeypatch.delenv("RC2_REGISTRY_URL", raising=False)
    env = dict(os.environ)
    log = tmp_path / "dagster.log"

    # Unpartitioned prerequisites through the CLI on the same instance; skymap also adds
    # the `tracts` dynamic partitions. In-process executor: instrument and skymap would
    # otherwise run as two processes writing one SQLite registry at the same time.
    run_config = tmp_path / "in_process.yaml"
    run_config.write_text("execution:\n  config:\n    in_process: {}\n")
    ui.dagster_cli(
        [
            "asset",
            "materialize",
            "-m",
            "rc2_platform.defs",
            "--select",
            "instrument,skymap",
            "-c",
            str(run_config),
        ],
        env,
        log,
    )

    with ui.dagster_dev(env, log) as url:
        run_id = _launch_raws_partition_in_ui(url, home, tmp_path)

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.tags.get("dagster/partition") == PARTITION
        # Queued with its tract: the instance's TractRunCoordinator added rc2/tract.
        assert run.tags.get("rc2/tract") == PARTITION.split("|")[1]
        event = instance.get_latest_materialization_event(dg.AssetKey("raws"))
        assert event is not None and event.run_id == run_id
        assert event.asset_materialization is not None
        assert event.asset_materialization.partition == PARTITION
    finally:
        instance.dispose()
    with Butler(str(repo)) as butler:
        got = butler.query_datasets("raw", collections="HSC/raw/all", where=f"band = '{BAND}'")
        other = butler.query_datasets("raw", collections="HSC/raw/all", where="band = 'r'")
    assert len(got) > 0
    assert other == []
    assert (tmp_path / "raws_g_9813_run.png").stat().st_size > 0
