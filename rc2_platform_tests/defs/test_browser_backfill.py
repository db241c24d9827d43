"""A UI backfill of a tract's outputs that fails on a truncated raw, then "Re-execute from failure".

The operator's failure path of issue 10, in headless Chromium against ``dagster dev`` on a
small slice of the ``tiny`` survey (one patch, one visit per band, stand-in tasks that
read every input through the datastore): select the four output assets in the catalog,
*Materialize selected*, pick the tract (all bands) and launch the backfill; one g raw is
truncated, so the run fails in its whole-graph step (the execution job's default: one
step runs every cluster job) and the run page names the exposure's cluster, the task and
data ID; the output assets show their g partition failed or missing.
After the raw is restored, *Re-execute → From failure* on the run page completes the
tract and every band partition is materialized.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import permutations
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pytest

from rc2_platform.butler import Butler
from rc2_platform.defs.execution_assets import OUTPUT_DATASET_TYPES
from rc2_platform.demo import demo_where
from rc2_platform.execution.stand_in import stand_in_graph
from rc2_platform.graph import QuantumGraph, save_graph
from rc2_platform.graph.builder import QuantumGraphBuilder
from rc2_platform.ingest import bootstrap, load_bootstrap_config
from rc2_platform.pipeline import Pipeline
from rc2_platform.simulate import simulate
from rc2_platform_tests.defs import ui_helpers as ui
from rc2_platform_tests.defs.test_execution_assets import record_graph

if TYPE_CHECKING:  # playwright is imported lazily: the test skips cleanly without it
    from playwright.sync_api import Page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.ui_reexecution,
    pytest.mark.filterwarnings("ignore::dagster.BetaWarning"),
]

RUN = "HSC/runs/ui-backfill"
UI_TIMEOUT_MS = 30_000
CONFIRM_TIMEOUT_MS = 5_000
RUN_TIMEOUT_S = 240.0


@dataclass
class FailingTract:
    """A repository whose tract graph will fail on one truncated g raw."""

    repo: Path
    tract: str
    bands: list[str]
    raw: Path
    good: bytes
    exposure: int
    detector: int

    def restore(self) -> None:
        self.raw.write_bytes(self.good)


def _real_isr(graph: QuantumGraph) -> QuantumGraph:
    """Stand-in tasks except ``isr``, which really reads the raws (and fails on a bad one)."""
    stand_in = stand_in_graph(graph)
    tasks = [
        real if real.label == "isr" else t
        for real, t in zip(graph.tasks, stand_in.tasks, strict=True)
    ]
    return QuantumGraph(
        tasks, graph.quanta, output_run=graph.output_run, input_collections=graph.input_collections,
        init_outputs=graph.init_outputs, metadata=graph.metadata, clusters=graph.clusters,
    )  # fmt: skip


def failing_tract(root: Path, home: Path) -> FailingTract:
    """Simulate, bootstrap, build a small stand-in graph of the first tract, record it in
    the instance at ``home`` as the tract's ``quantum_graph``, and truncate one g raw."""
    config_path = simulate("tiny", root / "survey", seed=1).bootstrap
    config = load_bootstrap_config(config_path)
    repo = root / "repo"
    bootstrap(config_path, repo, processes=1, progress=False)
    tract = str(config.tracts[0])
    where, bind = demo_where(config)
    with Butler(repo) as butler:
        bands = {
            str(r["physical_filter"]): str(r["band"])
            for r in butler.registry.query_dimension_records("physical_filter")
        }
        first: dict[str, int] = {}
        for record in sorted(
            butler.registry.query_dimension_records("visit"), key=lambda r: r["visit"]
        ):
            first.setdefault(bands[str(record["physical_filter"])], int(record["visit"]))
        bind = {**bind, "patches": bind["patches"][:1], "visits": sorted(first.values())}
        graph = QuantumGraphBuilder(
            butler, Pipeline.from_yaml("DRP-RC2"), input_collections=[config.collections.defaults],
            output_run=RUN, where=f"{where} AND visit IN (:visits)", bind=bind,
        ).build()  # fmt: skip
        # A raw the graph reads: the first g-band isr quantum's (only detectors on the patch).
        isr = min(
            (
                q
                for q in graph.quanta
                if q.task_label == "isr" and q.data_id["exposure"] == first["g"]
            ),
            key=lambda q: q.index,
        )
        (raw,) = (r for refs in isr.inputs.values() for r in refs if r.dataset_type.name == "raw")
        raw_path = butler.datastore.path_for(raw)
    graph_path = root / "tract.qgraph"
    save_graph(_real_isr(graph), graph_path)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        record_graph(instance, graph_path, RUN, tract=tract)
    finally:
        instance.dispose()
    good = raw_path.read_bytes()
    raw_path.write_bytes(good[:20_000])
    in_graph = sorted(
        {str(q.data_id["band"]) for q in graph.quanta if "band" in q.data_id.dimensions}
    )
    return FailingTract(
        repo, tract, in_graph, raw_path, good, int(raw.data_id["exposure"]),
        int(raw.data_id["detector"]),
    )  # fmt: skip


def _instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(home))


def _wait_for(home: Path, what: str, find: Callable[[dg.DagsterInstance], dg.DagsterRun | None],
              timeout: float = RUN_TIMEOUT_S) -> dg.DagsterRun:  # fmt: skip
    """Poll the instance until ``find`` returns a finished run; fail on timeout."""
    instance = _instance(home)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = find(instance)
            if run is not None and run.is_finished:
                return run
            time.sleep(1.0)
        pytest.fail(f"{what}: no finished run after {timeout:.0f} s")
    finally:
        instance.dispose()


def _backfill_run(backfill_id: str) -> Callable[[dg.DagsterInstance], dg.DagsterRun | None]:
    def find(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        return runs[0] if runs else None

    return find


def _child_run(parent: str) -> Callable[[dg.DagsterInstance], dg.DagsterRun | None]:
    def find(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
        runs = [r for r in instance.get_runs() if r.parent_run_id == parent]
        return runs[0] if runs else None

    return find


def _launch_tract_backfill(page: Page, url: str, tract: str) -> str:
    """Catalog → select the four outputs → Materialize selected → all bands × ``tract``."""
    from playwright.sync_api import expect

    page.goto(f"{url}/assets")
    for name in OUTPUT_DATASET_TYPES:
        box = page.get_by_test_id(f"checkbox-{name}")
        expect(box).to_have_count(1)
        box.evaluate("e => e.click()")  # the input is hidden behind its styled box
    page.get_by_role("button", name="Materialize selected").click()
    dialog = page.get_by_role("dialog")
    title = f"Launch runs to materialize {len(OUTPUT_DATASET_TYPES)} assets"
    expect(dialog.get_by_text(title)).to_be_visible()
    # The tract first: "All" bands is then checked by the dialog's count of 5 × 1 partitions.
    ui.pick_partition(page, "tract", tract)
    ui.select_all_partitions(page, "band", "5 partitions")
    page.get_by_role("button", name="Launch backfill").click()
    view = page.get_by_role("link", name="View", exact=True)
    href = view.get_attribute("href") or ""
    assert "/b/" in href or "backfill" in href, href
    return href.rstrip("/").rsplit("/", 1)[-1].split("?")[0]


def _drive(url: str, home: Path, ft: FailingTract, tmp_path: Path) -> tuple[str, str]:
    """The operator's path in the browser; returns (failed run id, re-execution run id)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(ui.fresh_profile(tmp_path)), executable_path=str(ui.CHROMIUM), headless=True,
            args=ui.CHROMIUM_ARGS, viewport={"width": 1400, "height": 900},
        )  # fmt: skip
        page = browser.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        expect.set_options(timeout=UI_TIMEOUT_MS)
        shot = "backfill"
        try:
            backfill = _launch_tract_backfill(page, url, ft.tract)
            first = _wait_for(home, f"backfill {backfill}", _backfill_run(backfill))
            assert first.status == dg.DagsterRunStatus.FAILURE, first.status
            shot = "failed_run"
            page.goto(f"{url}/runs/{first.run_id}")
            expect(page.get_by_text("Failure", exact=True).first).to_be_visible()
            step = f"run_step1[t{ft.tract}_whole_graph]"  # the default: one whole-graph step
            expect(page.get_by_text(step).first).to_be_visible()
            # The step's log names the cluster (the exposure's step-1 job) that failed.
            cluster = re.compile(rf"cluster step1_HSC_{ft.exposure}\b")
            expect(page.get_by_text(cluster).first).to_be_visible()
            # The log ends with RUN_FAILURE naming the step, task, data ID and exception.
            expect(page.get_by_text("RUN_FAILURE").first).to_be_visible()
            ids = {f"exposure={ft.exposure}", f"detector={ft.detector}"}
            either = "|".join(re.escape(", ".join(o)) for o in permutations(sorted(ids)))
            failed = re.compile(
                rf"isr \{{instrument=HSC, ({either})\}} failed \(attempt 1\): TruncatedFileError"
            )
            expect(page.get_by_text(failed).first).to_be_visible()
            shot = "partitions"
            page.goto(f"{url}/assets/calexp?view=partitions")
            # The g partition failed (its run did not materialize it), the others materialized.
            expect(page.get_by_text("Failed (1)", exact=True)).to_be_visible()
            expect(
                page.get_by_text(f"Materialized ({len(ft.bands) - 1})", exact=True)
            ).to_be_visible()
            page.screenshot(path=str(tmp_path / "calexp_partitions_failed.png"))

            ft.restore()
            shot = "reexecution"
            page.goto(f"{url}/runs/{first.run_id}")
            # The split button's arrow opens the re-execution menu.
            page.get_by_role("button", name="arrow_drop_down").click()
            page.get_by_role("menuitem", name=re.compile("from failure", re.IGNORECASE)).click()
            # Once the backfill is marked complete the UI asks to confirm ("Re-execution
            # within backfill"); before that it launches at once.
            with contextlib.suppress(PlaywrightTimeoutError):
                page.get_by_role("button", name="Confirm").click(timeout=CONFIRM_TIMEOUT_MS)
            again = _wait_for(home, "re-execution", _child_run(first.run_id))
            assert again.status == dg.DagsterRunStatus.SUCCESS, again.status
            page.goto(f"{url}/runs/{again.run_id}")
            expect(page.get_by_text("Success", exact=True).first).to_be_visible()
            expect(page.get_by_text("RUN_SUCCESS").first).to_be_visible()
            shot = "done"
            return first.run_id, again.run_id
        finally:
            page.screenshot(path=str(tmp_path / f"{shot}.png"))
            (tmp_path / "last_page.html").write_text(page.content())
            browser.close()


def test_ui_backfill_fails_on_a_truncated_raw_and_reexecution_from_failure_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ui.require_chromium()
    home = ui.write_local_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("RC2_REPO", str(tmp_path / "repo"))
    monkeypatch.setenv("RC2_BOOTSTRAP", str(tmp_path / "survey" / "bootstrap.yaml"))
    monkeypatch.delenv("RC2_REGISTRY_URL", raising=False)
    ft = failing_tract(tmp_path, home)
    env = dict(os.environ)
    log = tmp_path / "dagster.log"
    # The execution sensor would execute the recorded graph by itself: here the operator
    # launches the backfill, so the sensor is stopped first (in the same instance). The
    # figure sensor is stopped too: its run (which fails on the stand-ins' catalogs) would
    # queue behind the tract's run limit ahead of the re-execution this test waits for.
    for sensor in ("execution_sensor", "validation_figure_sensor"):
        ui.dagster_cli(["sensor", "stop", sensor, "-w", "workspace.yaml"], env, log)

    with ui.dagster_dev(env, log) as url:
        first, again = _drive(url, home, ft, tmp_path)

    instance = _instance(home)
    try:
        for name in OUTPUT_DATASET_TYPES:
            assert instance.get_materialized_partitions(dg.AssetKey(name)) == {
                f"{b}|{ft.tract}" for b in ft.bands
            }, name
        record = instance.get_run_by_id(again)
        assert record is not None and record.root_run_id == first
    finally:
        instance.dispose()
