"""The main job on the embedded default: simulate → bootstrap → graph → run → validate.

Everything runs in one folder: ``DIR/survey`` (the synthetic ``tiny`` survey),
``DIR/repo`` (the repository, SQLite unless a registry URL is given), the graph file
inside the repository and ``DIR/figures`` (the graph's task DAG, the run's timeline and
the validation figure). Each step is idempotent, so re-running the demo resumes where
it stopped.
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
    figures: list[Path] = field(default_factory=list)


def run_demo(
    directory: str | Path,
    *,
    registry_url: str | None = None,
    seed: int = 1,
    processes: int = 1,
    jobs: int = 2,
    say: Callable[[str], None] = print,
) -> DemoSummary:
    """Run the whole chain on the ``tiny`` survey in ``directory`` (re-running resumes).

    A second call finds the survey and the repository, keeps the graph file it built
    the first time (never replacing it) and resumes the run, which skips every quantum
    whose outputs exist.

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
    from rc2_platform.ingest import bootstrap, load_bootstrap_config
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
    if config_path.exists():
        say(f"== survey found in {survey}")
    else:
        step("simulate tiny survey", lambda: simulate("tiny", survey, seed=seed))
    step("bootstrap repository", lambda: bootstrap(config_path, repo, registry_url, progress=True))
    config = load_bootstrap_config(config_path)
    step("build QuantumGraph", lambda: build_demo_graph(summary, config, say))
    figures = root / "figures"
    figures.mkdir(exist_ok=True)
    summary.figures.append(_draw_graph(summary.graph, figures / "quantum_graph.png"))
    result = step(
        "execute",
        lambda: run_graph(
            summary.graph, repo, options=RunOptions(processes=processes, jobs=jobs, resume=True)
        ),
    )
    summary.status = result.status
    summary.counts = dict(result.counts)
    say(f"   run {result.run}: {result.status} {result.counts}")
    summary.figures.append(_draw_timeline(repo, figures / "run_timeline.png"))
    validation_png = figures / "validation.png"
    summary.validation = step("validate", lambda: _validate(repo, config, validation_png))
    summary.figures.append(validation_png)
    return summary


def demo_where(config: Any) -> tuple[str, dict[str, Any]]:
    """The data query of the demo graph: the first tract's simulated patches.

    Those are the patches with bright-object masks; coadds elsewhere would lack their
    mask, and warps there would feed nothing. ``docs/demo.md`` spells it out literally.
    """
    tract = config.tracts[0]
    patches = sorted({m.patch for m in config.masks if m.tract == tract})
    where = "skymap = :skymap AND tract = :tract AND patch IN (:patches)"
    return where, {"skymap": config.skymap.name, "tract": tract, "patches": patches}


def build_demo_graph(summary: DemoSummary, config: Any, say: Callable[[str], None]) -> None:
    """Build the demo graph once; an existing graph file is kept (the run resumes it)."""
    from rc2_platform.graph import save_graph
    from rc2_platform.graph.builder import QuantumGraphBuilder
    from rc2_platform.graph.io import QuantumGraphReader
    from rc2_platform.pipeline import Pipeline

    if summary.graph.exists():
        with QuantumGraphReader(summary.graph) as reader:
            n, run = reader.n_quanta, reader.output_run
        if n > 0 and run == DEMO_RUN:
            summary.quanta = _counts(summary.graph)
            say(f"   keeping {summary.graph} ({n} quanta); the run resumes it")
            return
        say(f"   {summary.graph} holds {n} quanta of {run!r}: building it again")
    where, bind = demo_where(config)
    with Butler(summary.repo) as butler:
        resuming = DEMO_RUN in _collections(butler)
        graph = QuantumGraphBuilder(
            butler,
            Pipeline.from_yaml("DRP-RC2"),
            input_collections=[config.collections.defaults],
            output_run=DEMO_RUN,
            where=where,
            bind=bind,
            skip_existing_in=[DEMO_RUN] if resuming else [],
            extend_run=resuming,
        ).build()
    summary.graph.parent.mkdir(parents=True, exist_ok=True)
    save_graph(graph, summary.graph)
    summary.quanta = graph.counts_by_task()
    say(f"   {len(graph)} quanta: {summary.quanta}")


def _counts(path: Path) -> dict[str, int]:
    from rc2_platform.graph import load_graph

    return load_graph(path).counts_by_task()


def _draw_graph(path: Path, png: Path) -> Path:
    from rc2_platform.graph import load_graph
    from rc2_platform.graph.render import draw_png

    graph = load_graph(path)
    labels = [t.label for t in graph.tasks]
    title = f"{path.name}: {len(graph)} quanta"
    return draw_png(labels, graph.counts_by_task(), graph.task_edges(), png, title=title)


def _draw_timeline(repo: Path, png: Path) -> Path:
    from rc2_platform.execution.report import build_report, write_timeline_png

    return write_timeline_png(build_report(repo, DEMO_RUN), png)


def _collections(butler: Butler) -> set[str]:
    return {c.name if hasattr(c, "name") else str(c) for c in butler.registry.query_collections()}


def _validate(repo: Path, config: Any, png: Path) -> Any:
    from rc2_platform.validate import validate_run

    return validate_run(repo, DEMO_RUN, config.truth, png=png)
