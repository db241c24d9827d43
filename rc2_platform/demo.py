"""The main job on the embedded default: simulate → bootstrap → graph → run → validate.

Everything runs in one folder: ``DIR/survey`` (the synthetic ``tiny`` survey),
``DIR/repo`` (the repository, SQLite unless a registry URL is given) and the graph file
inside the repository. Each step is idempotent, so re-running the demo resumes where it
stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rc2_platform.butler import Butler

#: The RUN the demo writes its outputs to.
DEMO_RUN = "HSC/runs/demo"


@dataclass
class DemoSummary:
    """What the demo did: the paths it used and the seconds per step."""

    survey: Path
    repo: Path
    graph: Path
    run: str
    status: str = "not run"
    seconds: dict[str, float] = field(default_factory=dict)
    quanta: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    validation: Any = None


def run_demo(
    directory: str | Path,
    *,
    registry_url: str | None = None,
    seed: int = 1,
    processes: int = 1,
    jobs: int = 2,
    say: Callable[[str], None] = print,
) -> DemoSummary:
    """Run the whole chain on the ``tiny`` survey in ``directory``.

    Parameters
    ----------
    directory : str or Path
        Working folder (created if missing).
    registry_url : str, optional
        Server registry for the repository; SQLite inside ``directory/repo`` by default.
    seed : int
        Seed of the synthetic survey.
    processes : int
        Processes per cluster job.
    jobs : int
        Cluster jobs running at once on the local backend.
    say : callable
        Where progress lines go.
    """
    from rc2_platform.execution.runner import RunOptions, run_graph
    from rc2_platform.graph import save_graph
    from rc2_platform.graph.builder import QuantumGraphBuilder
    from rc2_platform.ingest import bootstrap, load_bootstrap_config
    from rc2_platform.pipeline import Pipeline
    from rc2_platform.simulate import simulate

    root = Path(directory).resolve()
    survey, repo = root / "survey", root / "repo"
    summary = DemoSummary(survey, repo, repo / "_graphs" / "demo.qgraph", DEMO_RUN)

    def step(name: str, func: Callable[[], Any]) -> Any:
        say(f"== {name}")
        start = time.perf_counter()
        result = func()
        summary.seconds[name] = round(time.perf_counter() - start, 2)
        return result

    config_path = survey / "bootstrap.yaml"
    if not config_path.exists():
        step("simulate tiny survey", lambda: simulate("tiny", survey, seed=seed))
    step("bootstrap repository", lambda: bootstrap(config_path, repo, registry_url, progress=True))
    config = load_bootstrap_config(config_path)

    def build() -> None:
        with Butler(repo) as butler:
            resuming = DEMO_RUN in _collections(butler)
            graph = QuantumGraphBuilder(
                butler,
                Pipeline.from_yaml("DRP-RC2"),
                input_collections=[config.collections.defaults],
                output_run=DEMO_RUN,
                # The simulated patches (those with bright-object masks): coadds elsewhere
                # would lack their mask, and warps there would feed nothing.
                where="skymap = :skymap AND tract = :tract AND patch IN (:patches)",
                bind={
                    "skymap": config.skymap.name,
                    "tract": config.tracts[0],
                    "patches": sorted(
                        {m.patch for m in config.masks if m.tract == config.tracts[0]}
                    ),
                },
                skip_existing_in=[DEMO_RUN] if resuming else [],
                extend_run=resuming,
            ).build()
        summary.graph.parent.mkdir(parents=True, exist_ok=True)
        save_graph(graph, summary.graph)
        summary.quanta = graph.counts_by_task()
        say(f"   {len(graph)} quanta: {summary.quanta}")

    step("build QuantumGraph", build)
    result = step(
        "execute",
        lambda: run_graph(
            summary.graph, repo, options=RunOptions(processes=processes, jobs=jobs, resume=True)
        ),
    )
    summary.status = result.status
    summary.counts = dict(result.counts)
    say(f"   run {result.run}: {result.status} {result.counts}")
    summary.validation = step("validate", lambda: _validate(repo, config))
    return summary


def _collections(butler: Butler) -> set[str]:
    return {c.name if hasattr(c, "name") else str(c) for c in butler.registry.query_collections()}


def _validate(repo: Path, config: Any) -> Any:
    from rc2_platform.validate import validate_run

    return validate_run(repo, DEMO_RUN, config.truth, png=repo / "validation.png")
