"""Stage-by-stage execution of graphs, one cluster job at a time (what Dagster fans out).

:func:`~rc2_platform.execution.runner.run_graph` drives a whole graph in one loop. An
orchestrator that fans jobs out itself (the Dagster execution job: one step per cluster)
needs the same work cut in pieces that are plain data between calls:

1. :func:`prepare_run` — once per graph: register the RUN and dataset types, write the
   init-outputs and the workers' input records, journal ``run_started`` (and, with
   ``resume``, find the quanta already done). Returns a :class:`Ledger`.
2. :func:`plan_stage` — per stage (clustering rule), the :class:`ClusterSpec` of every
   cluster with work left; clusters whose every quantum is done or blocked get no job.
3. :func:`run_cluster_job` — per cluster: submit it (with retries) on a backend, or
   through a *launcher* (a Dagster Pipes client), wait, and register its outputs in one
   transaction. Returns a :class:`ClusterOutcome`.
4. :func:`record_outcomes` folds outcomes into the ledger; :func:`finish_run` journals
   ``run_finished`` (so ``rc2 report RUN`` works) and :func:`band_summary` gives the
   per-band counts the Dagster assets carry as metadata.

Everything reuses the orchestrator of :mod:`~rc2_platform.execution.runner` (job
commands, journal, registration, retries); nothing here imports Dagster.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rc2_platform.butler import Butler
from rc2_platform.errors import ExecutionError
from rc2_platform.execution.backends import Backend, ClusterJob, JobHandle, JobStatus
from rc2_platform.execution.backends import make_backend as _make_backend
from rc2_platform.execution.execution_config import ExecutionConfig
from rc2_platform.execution.executor import FAILED, SUCCEEDED
from rc2_platform.execution.runner import RunOptions, _Orchestrator
from rc2_platform.graph.clustering import ClusterPlan, plan_clusters
from rc2_platform.graph.io import load_graph
from rc2_platform.graph.model import QuantumGraph

__all__ = [
    "BLOCKED",
    "ClusterOutcome",
    "ClusterSpec",
    "Launcher",
    "Ledger",
    "band_summary",
    "check_stages",
    "finish_run",
    "mapping_key",
    "plan_stage",
    "prepare_run",
    "record_outcomes",
    "run_cluster_job",
]

BLOCKED = "blocked"

#: Submits one cluster job, waits for its end, returns its handle and final status.
#: ``on_submitted`` must be called with the handle as soon as the job is queued.
Launcher = Callable[[ClusterJob, Callable[[JobHandle], None]], tuple[JobHandle, JobStatus]]


@dataclass
class Ledger:
    """What is known about one graph's execution between stages (plain, picklable data).

    Attributes
    ----------
    tract : str
        The tract (Dagster partition) the graph covers.
    graph_path : str
        The ``.qgraph`` file.
    output_run : str
        Its RUN collection.
    states : dict[int, str]
        Quantum index -> ``succeeded`` / ``failed`` / ``blocked`` once final.
    errors : dict[str, int]
        Failure message -> number of quanta (for the run's metadata).
    clusters_run : int
        Cluster jobs executed so far.
    """

    tract: str
    graph_path: str
    output_run: str
    n_quanta: int
    states: dict[int, str] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    clusters_run: int = 0

    def counts(self) -> dict[str, int]:
        """Quanta per state (``pending`` for those without a final state)."""
        out = {SUCCEEDED: 0, FAILED: 0, BLOCKED: 0, "pending": 0}
        for state in self.states.values():
            out[state] = out.get(state, 0) + 1
        out["pending"] = self.n_quanta - len(self.states)
        return out


@dataclass(frozen=True)
class ClusterSpec:
    """One cluster job to run: everything :func:`run_cluster_job` needs, as plain data."""

    tract: str
    graph_path: str
    cluster: str
    stage: str
    quanta: int
    #: Final states of quanta that matter to this cluster (its own done ones, and the
    #: failed/blocked quanta it reads from).
    known: dict[int, str] = field(default_factory=dict)


@dataclass
class ClusterOutcome:
    """The end of one cluster job (all its attempts)."""

    tract: str
    cluster: str
    stage: str
    states: dict[int, str]
    registered: int
    attempts: int
    seconds: float
    errors: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Quanta of the cluster per final state."""
        out: dict[str, int] = {}
        for state in self.states.values():
            out[state] = out.get(state, 0) + 1
        return out


def mapping_key(tract: str, cluster: str) -> str:
    """A Dagster mapping key (``[A-Za-z0-9_]``) for a cluster of a tract."""
    return f"t{tract}_" + re.sub(r"[^A-Za-z0-9_]", "_", cluster)


#: (graph path, mtime, clustering rules as JSON) -> (graph, plan); a tract's graph is
#: loaded once per process, not once per cluster step.
_CACHE: dict[tuple[str, float, str], tuple[QuantumGraph, ClusterPlan]] = {}


def _load(path: str, config: ExecutionConfig) -> tuple[QuantumGraph, ClusterPlan]:
    rules = json.dumps({k: v.model_dump() for k, v in config.clustering.items()}, sort_keys=True)
    key = (str(Path(path).resolve()), Path(path).stat().st_mtime, rules)
    if key not in _CACHE:
        graph = load_graph(path)
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = (graph, plan_clusters(graph, config.clustering))
    return _CACHE[key]


def check_stages(graph_path: str, config: ExecutionConfig, stages: Sequence[str]) -> None:
    """Check that every cluster of the graph falls in one of ``stages``, in order.

    Raises
    ------
    ExecutionError
        If the graph has a stage (a task no clustering rule covers) that ``stages``
        lacks, or a cluster reads from a cluster of the same or a later stage.
    """
    _graph, plan = _load(graph_path, config)
    rank = {s: i for i, s in enumerate(stages)}
    unknown = [s for s in plan.stages if s not in rank]
    if unknown:
        raise ExecutionError(
            f"graph {graph_path} has stage(s) {unknown} that the execution job's stages "
            f"{list(stages)} lack: add those tasks to a clustering rule of the execution "
            "config (rc2_platform/config/execution.yaml), or run the graph with `rc2 run`"
        )
    for name, parents in plan.parents.items():
        for parent in parents:
            if rank[plan.stage[parent]] >= rank[plan.stage[name]]:
                raise ExecutionError(
                    f"graph {graph_path}: cluster {name!r} (stage {plan.stage[name]!r}) reads "
                    f"from {parent!r} (stage {plan.stage[parent]!r}), which does not run "
                    "before it; a stage's clusters must only read earlier stages — change "
                    "group_by of the clustering rules"
                )


def _orchestrator(
    butler: Butler,
    graph_path: str,
    config: ExecutionConfig,
    backend: Backend,
    options: RunOptions | None,
) -> _Orchestrator:
    """The runner's orchestrator over one graph (its own constructor: no copied state).

    It loads the graph itself (once per cluster step; the cached copy serves planning).
    """
    return _Orchestrator(
        Path(graph_path).resolve(), butler, config, options or RunOptions(), backend
    )


def prepare_run(
    repo: str | Path,
    tract: str,
    graph_path: str,
    config: ExecutionConfig,
    *,
    backend_name: str = "local",
    options: RunOptions | None = None,
) -> Ledger:
    """Register the graph's RUN and dataset types, write init-outputs, journal the start.

    With ``options.resume`` the quanta whose outputs are all registered are marked
    succeeded in the returned ledger (they get no job).
    """
    with Butler(repo) as butler:
        orch = _orchestrator(butler, graph_path, config, _NoBackend(backend_name), options)
        orch.prepare()
        ledger = Ledger(tract, str(orch.graph_path), orch.graph.output_run, len(orch.graph))
        ledger.states.update(orch.state)
    return ledger


def plan_stage(ledger: Ledger, stage: str, config: ExecutionConfig) -> list[ClusterSpec]:
    """Clusters of ``stage`` that still have work, with the states they depend on.

    Quanta behind a failed or blocked quantum are marked blocked in the ledger here;
    a cluster left with nothing to run gets no spec.
    """
    graph, plan = _load(ledger.graph_path, config)
    specs = []
    for name in plan.in_stage(stage):
        known: dict[int, str] = {}
        todo = 0
        for i in plan.clusters[name]:
            if i in ledger.states:
                known[i] = ledger.states[i]
                continue
            bad = [u for u in graph.upstream[i] if ledger.states.get(u) in (FAILED, BLOCKED)]
            if bad and all(u not in plan.clusters[name] for u in bad):
                ledger.states[i] = BLOCKED
                known[i] = BLOCKED
                continue
            todo += 1
            for u in graph.upstream[i]:
                if ledger.states.get(u) in (FAILED, BLOCKED):
                    known[u] = ledger.states[u]
        if todo:
            specs.append(ClusterSpec(ledger.tract, ledger.graph_path, name, stage, todo, known))
    return specs


class _NoBackend(Backend):
    """Placeholder for preparation, which submits nothing."""

    name: ClassVar[str] = "none"

    def __init__(self, label: str) -> None:
        self.label = label

    def submit(self, jobs: Sequence[ClusterJob]) -> list[JobHandle]:
        raise ExecutionError("preparation submits no jobs")

    def status(self, handles: Sequence[JobHandle]) -> dict[str, JobStatus]:
        return {}

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        return None


class _LauncherBackend(Backend):
    """A :class:`Backend` whose ``submit`` runs each job to its end through a launcher."""

    name: ClassVar[str] = "pipes"

    def __init__(self, launcher: Launcher) -> None:
        self.launcher = launcher
        self.final: dict[str, JobStatus] = {}

    def submit(self, jobs: Sequence[ClusterJob]) -> list[JobHandle]:
        handles = []
        for job in jobs:
            handle, status = self.launcher(job, lambda _h: None)
            self.final[handle.id] = status
            handles.append(handle)
        return handles

    def status(self, handles: Sequence[JobHandle]) -> dict[str, JobStatus]:
        return {h.id: self.final[h.id] for h in handles}

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        return None


def run_cluster_job(
    repo: str | Path,
    spec: ClusterSpec,
    config: ExecutionConfig,
    *,
    backend: Backend | None = None,
    launcher: Launcher | None = None,
    options: RunOptions | None = None,
) -> ClusterOutcome:
    """Run one cluster (retrying failed quanta per the retry policy) and register it.

    Parameters
    ----------
    repo : str or Path
        Repository root.
    spec : ClusterSpec
        From :func:`plan_stage`.
    config : ExecutionConfig
        Resources, retries and backend settings.
    backend : Backend, optional
        Where the job runs (non-blocking submit + polling); ``options.backend`` or the
        config's default when neither this nor ``launcher`` is given.
    launcher : Launcher, optional
        Runs each attempt to its end (a Dagster Pipes client); wins over ``backend``.
    options : RunOptions, optional
        Worker command, processes per job, poll interval.

    Returns
    -------
    ClusterOutcome
        Final state of each of the cluster's quanta; the succeeded ones' outputs are
        registered (one transaction per attempt).
    """
    options = options or RunOptions()
    start = time.time()
    if launcher is not None:
        backend = _LauncherBackend(launcher)
    elif backend is None:
        backend = _make_backend(config, options.backend)
    with Butler(repo) as butler:
        orch = _orchestrator(butler, spec.graph_path, config, backend, options)
        orch.state.update(spec.known)
        name = spec.cluster
        orch._submit_ready = lambda: None  # type: ignore[method-assign]  # we submit ourselves
        todo = orch._runnable(name)
        if todo:
            job, attempt = orch._make_job(name, todo)
            (attempt.handle,) = backend.submit([job])
            orch.active[name] = attempt
            orch._journal_submit(job, attempt)
            while name in orch.active:
                current = orch.active[name]
                status = backend.status([current.handle])[current.handle.id]
                if status.state.is_terminal:
                    del orch.active[name]
                    orch._finish(current, status)  # registers; may resubmit a retry
                else:
                    time.sleep(options.poll_seconds)
        members = orch.plan.clusters[name]
        states = {i: orch.state.get(i, BLOCKED) for i in members}
        errors = _errors_of(orch, name, members)
        registered = sum(
            int(e.get("registered", 0))
            for e in orch.journal.events("job_finished")
            if e.get("cluster") == name and e.get("time", 0) >= start
        )
    return ClusterOutcome(
        spec.tract,
        name,
        spec.stage,
        states,
        registered,
        orch.attempts.get(name, 0),
        round(time.time() - start, 3),
        errors,
    )


def _errors_of(orch: _Orchestrator, name: str, members: Iterable[int]) -> dict[str, int]:
    """Failure messages of the cluster's failed quanta, from the journal's job results."""
    from rc2_platform.execution.job import JobResult

    failed = {i for i in members if orch.state.get(i) == FAILED}
    messages: dict[int, str] = {}
    for event in orch.journal.events("job_finished"):
        result = event.get("result")
        if event.get("cluster") == name and result and failed:
            try:
                outcomes = JobResult.read(result).outcomes
            except ExecutionError:
                continue
            for o in outcomes:
                if o.index in failed and o.status == FAILED:
                    messages[o.index] = (o.error or "unknown error").splitlines()[0][:200]
    for i in failed - set(messages):
        messages[i] = "job died before writing its result"
    out: dict[str, int] = {}
    for text in messages.values():
        out[text] = out.get(text, 0) + 1
    return out


def record_outcomes(ledger: Ledger, outcomes: Iterable[ClusterOutcome]) -> Ledger:
    """Fold the outcomes of one graph's clusters into its ledger (returned, updated)."""
    for outcome in outcomes:
        if outcome.tract != ledger.tract:
            continue
        ledger.states.update(outcome.states)
        ledger.clusters_run += 1
        for text, n in outcome.errors.items():
            ledger.errors[text] = ledger.errors.get(text, 0) + n
    return ledger


def finish_run(repo: str | Path, ledger: Ledger) -> dict[str, int]:
    """Journal ``run_finished`` for the ledger's RUN; return its quantum counts."""
    from rc2_platform.execution.journal import Journal

    counts = ledger.counts()
    status = "succeeded" if counts[SUCCEEDED] == ledger.n_quanta else "failed"
    Journal.for_run(repo, ledger.output_run).append("run_finished", status=status, counts=counts)
    return counts


def _band_of_visits(butler: Butler) -> dict[Any, str]:
    filters = {
        r["physical_filter"]: r.get("band")
        for r in butler.query_dimension_records("physical_filter")
    }
    out: dict[Any, str] = {}
    for record in butler.query_dimension_records("visit"):
        band = record.get("band") or filters.get(record.get("physical_filter"))
        if band is not None:
            out[record["visit"]] = str(band)
    return out


def _fits_rows(path: Path) -> int | None:
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdus:
            for hdu in hdus[1:]:
                if hdu.header.get("XTENSION") == "BINTABLE":
                    return int(hdu.header.get("NAXIS2", 0))
    except (OSError, ValueError):
        return None
    return None


def band_summary(
    repo: str | Path, ledger: Ledger, dataset_types: Sequence[str], config: ExecutionConfig
) -> dict[str, dict[str, Any]]:
    """Per band: quanta by state, and per dataset type registered datasets and table rows.

    Quanta without a band (single-frame quanta get it from their visit; per-patch merges
    have none) are counted under the band ``"*"`` (tract-wide).
    """
    graph, _plan = _load(ledger.graph_path, config)
    with Butler(repo) as butler:
        visit_band = (
            _band_of_visits(butler) if any("visit" in q.data_id for q in graph.quanta) else {}
        )
        refs = [
            r for q in graph.quanta for r in q.all_outputs() if r.dataset_type.name in dataset_types
        ]
        records = butler.datastore_records(refs)
        store_root = Path(butler.datastore.root)
    summary: dict[str, dict[str, Any]] = {}

    def band_of(data_id: Mapping[str, Any]) -> str:
        if "band" in data_id:
            return str(data_id["band"])
        if "visit" in data_id:
            return visit_band.get(data_id["visit"], "*")
        return "*"

    def entry(band: str) -> dict[str, Any]:
        return summary.setdefault(
            band, {SUCCEEDED: 0, FAILED: 0, BLOCKED: 0, "pending": 0, "datasets": {}, "rows": {}}
        )

    for q in graph.quanta:
        entry(band_of(q.data_id))[ledger.states.get(q.index, "pending")] += 1
    for ref in refs:
        e = entry(band_of(ref.data_id))
        name = ref.dataset_type.name
        e["datasets"].setdefault(name, 0)
        record = records.get(ref.id)
        if record is None:
            continue
        e["datasets"][name] += 1
        if record.formatter.startswith("fits") and "table" in record.formatter:
            rows = _fits_rows(store_root / record.path)
            if rows is not None:
                e["rows"][name] = e["rows"].get(name, 0) + rows
    return summary
