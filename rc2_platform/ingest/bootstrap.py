"""``bootstrap``: build a whole repository from one ``bootstrap.yaml``.

Steps, in order: instrument, sky map, raws, visits, calibrations, reference catalogs,
bright-object masks, the default collection chain. Every step is idempotent, so a
second run ingests nothing and says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rc2_platform.butler import Butler
from rc2_platform.core import CollectionType
from rc2_platform.core.crash_points import crash_point
from rc2_platform.ingest._common import IngestResult, timed
from rc2_platform.ingest.bootstrap_config import (
    BootstrapConfig,
    CollectionNames,
    load_bootstrap_config,
)
from rc2_platform.ingest.calibs import ingest_calibrations
from rc2_platform.ingest.instrument import register_instrument
from rc2_platform.ingest.masks import ingest_bright_object_masks
from rc2_platform.ingest.raws import ingest_raws
from rc2_platform.ingest.refcats import ingest_refcats
from rc2_platform.ingest.skymap import register_skymap
from rc2_platform.ingest.truth import ingest_truth
from rc2_platform.ingest.visits import define_visits

__all__ = ["BootstrapSummary", "bootstrap", "register_default_chain", "run_bootstrap"]


@dataclass
class BootstrapSummary:
    """The results of every bootstrap step."""

    repo: Path
    results: list[IngestResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ingested(self) -> int:
        """Items newly written over all steps."""
        return sum(r.ingested for r in self.results)

    @property
    def skipped(self) -> int:
        """Items already present over all steps."""
        return sum(r.skipped for r in self.results)

    @property
    def failed(self) -> list[tuple[str, str, str]]:
        """``(step, item, reason)`` of every failure."""
        return [(r.step, i, why) for r in self.results for i, why in r.failed]

    @property
    def nothing_to_do(self) -> bool:
        """True when no step wrote anything and nothing failed (an idempotent re-run)."""
        return self.ingested == 0 and not self.failed

    def message(self) -> str:
        """One line: what happened."""
        if self.nothing_to_do:
            return f"nothing to do: {self.skipped} already ingested in {self.repo}"
        return (
            f"bootstrapped {self.repo}: {self.ingested} ingested, {self.skipped} skipped, "
            f"{len(self.failed)} failed in {self.seconds:.1f} s"
        )

    def table(self) -> Table:
        """A rich table: step, collection, ingested, skipped, failed, rows, seconds."""
        table = Table(title="bootstrap summary")
        for col in ("step", "collection", "ingested", "skipped", "failed", "rows", "seconds"):
            table.add_column(col, justify="left" if col in ("step", "collection") else "right")
        for r in self.results:
            table.add_row(
                r.step, r.collection, str(r.ingested), str(r.skipped), str(len(r.failed)),
                str(r.rows), f"{r.seconds:.2f}",
            )  # fmt: skip
        return table

    def as_dict(self) -> dict[str, object]:
        """Plain data for ``--json`` and benchmarks."""
        return {
            "repo": str(self.repo),
            "seconds": round(self.seconds, 3),
            "nothing_to_do": self.nothing_to_do,
            "steps": [r.as_dict() for r in self.results],
        }


def register_default_chain(butler: Butler, names: CollectionNames) -> IngestResult:
    """Make CHAINED ``names.defaults`` = [raw, calib, refcats, masks, skymaps].

    Missing children are created empty (RUNs; the calib one as CALIBRATION).
    """
    result = IngestResult("collections", collection=names.defaults)
    with timed(result):
        reg = butler.registry
        children = [names.raw, names.calib, names.refcats, names.masks, names.skymaps]
        for child in children:
            ctype = CollectionType.CALIBRATION if child == names.calib else CollectionType.RUN
            if child not in reg.query_collections(child):
                reg.register_collection(child, ctype)
        created = reg.register_collection(names.defaults, CollectionType.CHAINED)
        if created or reg.get_collection_chain(names.defaults) != children:
            reg.set_collection_chain(names.defaults, children)
            result.ingested = result.rows = 1
        else:
            result.skipped = 1
    return result


Step = Callable[[Butler, Callable[[int], None]], IngestResult]


def _steps(config: BootstrapConfig, processes: int) -> list[tuple[str, int | None, Step]]:
    """(label, progress total or None, step function) in bootstrap order."""
    names = config.collections
    sm = config.skymap
    tracts = None if sm.scope == "all" else config.tracts
    raw_files = sum(1 for _ in config.raws.iter_files())
    refcat = config.refcat
    return [
        ("instrument", None, lambda b, _: register_instrument(b, config.instrument)),
        ("skymap", None, lambda b, _: register_skymap(
            b, sm.name, sm.config, tracts=tracts, run=names.skymaps)),
        ("raws", raw_files, lambda b, p: ingest_raws(
            b, config.raws.paths, run=names.raw, transfer=config.raws.transfer,
            processes=processes, progress=p)),
        ("visits", None, lambda b, _: define_visits(b, raw_run=names.raw)),
        ("calibrations", None, lambda b, _: ingest_calibrations(
            b, config.calibrations, run=names.calib_run, collection=names.calib,
            instrument=config.instrument)),
        ("refcats", None, lambda b, _: ingest_refcats(
            b, refcat.shards if refcat else [], name=refcat.name if refcat else "synth_refcat",
            run=names.refcats, transfer=refcat.transfer if refcat else "copy")),
        ("masks", None, lambda b, _: ingest_bright_object_masks(
            b, config.masks, skymap=sm.name, run=names.masks)),
        ("truth", None, lambda b, _: ingest_truth(b, config.truth, instrument=config.instrument)),
        ("collections", None, lambda b, _: register_default_chain(b, names)),
    ]  # fmt: skip


@contextmanager
def _progress(enabled: bool, console: Console | None) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    bar = Progress(
        TextColumn("{task.description:<13}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console or Console(stderr=True),
    )
    with bar:
        yield bar


def run_bootstrap(
    config: BootstrapConfig,
    butler: Butler,
    *,
    processes: int = 2,
    progress: bool = True,
    console: Console | None = None,
) -> BootstrapSummary:
    """Run every bootstrap step of ``config`` against an open ``butler``."""
    summary = BootstrapSummary(butler.root)
    t0 = time.perf_counter()
    with _progress(progress, console) as bar:
        for label, total, step in _steps(config, processes):
            task = bar.add_task(label, total=total or 1) if bar is not None else None

            def advance(n: int, task: object = task) -> None:
                if bar is not None and task is not None:
                    bar.advance(task, n)  # type: ignore[arg-type]

            summary.results.append(step(butler, advance))
            crash_point("bootstrap.step")
            if bar is not None and task is not None:
                bar.update(task, completed=total or 1)
    summary.seconds = time.perf_counter() - t0
    return summary


def bootstrap(
    config_path: str | Path,
    repo: str | Path,
    registry_url: str | None = None,
    *,
    processes: int = 2,
    progress: bool = True,
    console: Console | None = None,
) -> BootstrapSummary:
    """Build (or complete) a repository from a ``bootstrap.yaml``.

    Parameters
    ----------
    config_path : path
        The ``bootstrap.yaml`` (e.g. written by ``rc2 simulate``).
    repo : path
        Repository folder; created if missing (with ``registry_url`` or SQLite).
    registry_url : str, optional
        Server registry for a new repository (password from ``RC2_DB_PASSWORD``).
    processes : int
        Processes reading raw headers.
    progress : bool
        Show a rich progress bar per step and the summary table at the end.
    console : rich Console, optional
        Where progress and summary go (default: stderr).

    Returns
    -------
    BootstrapSummary
        Per-step results; ``nothing_to_do`` is true for a re-run that changed nothing.

    Raises
    ------
    ConfigError
        Invalid ``bootstrap.yaml`` or a file it names does not exist.
    """
    config = load_bootstrap_config(config_path, check_files=True)
    repo = Path(repo)
    butler = Butler.create(repo, registry_url, exist_ok=True)
    try:
        summary = run_bootstrap(
            config, butler, processes=processes, progress=progress, console=console
        )
    finally:
        butler.close()
    if progress:
        out = console or Console(stderr=True)
        out.print(summary.table())
        out.print(summary.message())
    return summary
