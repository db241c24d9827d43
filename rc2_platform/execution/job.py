"""Run one cluster job: its quanta in dependency order, in one or several processes.

This is what every backend runs (``rc2 run-cluster GRAPH --cluster NAME --repo REPO
--result FILE``, through :mod:`~rc2_platform.execution.worker`). The job reads only its
quanta from the graph file, opens only the datastore (no registry connection), and
appends one *record* per quantum to its records file as each quantum ends (see
:mod:`~rc2_platform.execution.records`): state, error, timings, peak memory, input and
output dataset ids, and the datastore records of the files written. Registration is a
separate step (:mod:`~rc2_platform.execution.aggregate`) that reads those records. A job
that dies keeps the records of the quanta it finished; the others have none, so nothing
of theirs gets registered and the files they wrote are overwritten by the next attempt.

A failed quantum does not stop independent quanta of the job; quanta that need its
outputs are ``blocked``.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from rc2_platform.datastore import DatastoreRecord
from rc2_platform.errors import ClusterJobError, GraphError
from rc2_platform.execution.executor import PreparedTask, QuantumExecutor, QuantumOutcome
from rc2_platform.execution.quantum_state import QuantumState, blocking_upstream
from rc2_platform.execution.records import JobResult, RecordsWriter
from rc2_platform.graph.io import QuantumGraphReader, save_graph
from rc2_platform.graph.model import Quantum, QuantumGraph
from rc2_platform.pipeline.task_modules import check_task_class

__all__ = [
    "JOB_METADATA_KEY",
    "JobResult",
    "error_summary",
    "load_input_records",
    "run_cluster",
    "write_input_records",
    "write_job_graph",
]

#: Graph-metadata key of a *job graph* (see :func:`write_job_graph`).
JOB_METADATA_KEY = "rc2_job"


def error_summary(outcomes: Iterable[QuantumOutcome]) -> dict[str, int]:
    """First line (200 characters) of each failed outcome's error -> number of quanta."""
    out: dict[str, int] = {}
    for o in outcomes:
        if o.status is QuantumState.FAILED:
            text = (o.error or "unknown error").splitlines()[0][:200]
            out[text] = out.get(text, 0) + 1
    return out


def write_input_records(path: str | Path, records: Iterable[DatastoreRecord]) -> int:
    """Write the overall inputs' datastore records for workers; return how many."""
    doc = _records_doc(records)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    os.replace(tmp, path)
    return len(doc)


def _records_doc(records: Iterable[DatastoreRecord]) -> dict[str, list[Any]]:
    return {str(r.dataset_id): [r.path, r.formatter, r.storage_class, r.file_size] for r in records}


def _records_from_doc(doc: Mapping[str, Any]) -> dict[uuid.UUID, DatastoreRecord]:
    out = {}
    for k, (p, f, s, n) in doc.items():
        key = uuid.UUID(k)
        out[key] = DatastoreRecord(key, p, f, s, int(n))
    return out


def write_job_graph(
    path: str | Path,
    graph: QuantumGraph,
    indexes: Sequence[int],
    input_records: Mapping[uuid.UUID, DatastoreRecord],
    cluster: str,
) -> int:
    """Write the self-contained graph file of one job; return its size in bytes.

    It holds only the job's quanta (renumbered 0..n-1; their indexes in ``graph`` are kept
    in the metadata and restored by :func:`run_cluster`) and the datastore records of
    their overall inputs, so that a job reads a few kB instead of decoding the blocks of
    the whole graph that hold its quanta and a records file for every input of the run.

    Parameters
    ----------
    path : str or Path
        The file to write (``.qgraph`` format).
    graph : QuantumGraph
        The whole graph.
    indexes : sequence of int
        The job's quanta (indexes in ``graph``).
    input_records : mapping of UUID to DatastoreRecord
        Records of the run's overall inputs; those the job reads are copied in.
    cluster : str
        The cluster name, recorded in the metadata.
    """
    quanta = [dataclasses.replace(graph.quanta[i], index=k) for k, i in enumerate(indexes)]
    needed = {
        r.id: input_records[r.id] for q in quanta for r in q.all_inputs() if r.id in input_records
    }
    labels = {q.task_label for q in quanta}
    job = QuantumGraph(
        [t for t in graph.tasks if t.label in labels],
        quanta,
        output_run=graph.output_run,
        input_collections=graph.input_collections,
        metadata={
            JOB_METADATA_KEY: {
                "cluster": cluster,
                "indexes": list(indexes),
                "input_records": _records_doc(needed.values()),
            }
        },
    )
    return save_graph(job, path)


def load_input_records(path: str | Path | None) -> dict[uuid.UUID, DatastoreRecord]:
    """Read a file written by :func:`write_input_records` (empty if ``path`` is None)."""
    if path is None:
        return {}
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ClusterJobError(f"cannot read input records file {path}: {exc}") from None
    return _records_from_doc(doc)


# Worker-process state for the multi-process mode (inherited through fork).
_STATE: dict[str, Any] = {}


def _execute_in_child(index: int) -> QuantumOutcome:
    executor: QuantumExecutor = _STATE["executor"]
    quantum: Quantum = _STATE["quanta"][index]
    return executor.execute(quantum, _STATE["tasks"][quantum.task_label])


def _local_upstream(quanta: Sequence[Quantum]) -> dict[int, set[int]]:
    producers = {ref.id: q.index for q in quanta for ref in q.all_outputs()}
    return {q.index: {producers[r.id] for r in q.all_inputs() if r.id in producers} for q in quanta}


def _blocked(quantum: Quantum, by: QuantumOutcome) -> QuantumOutcome:
    return QuantumOutcome(
        quantum.index,
        quantum.task_label,
        dict(quantum.data_id.to_dict()),
        QuantumState.BLOCKED,
        error=f"upstream quantum {by.task_label} {by.data_id} {by.status.value}",
    )


#: Called with each quantum's outcome as soon as it is known (writes its record).
OnOutcome = Callable[[QuantumOutcome], None]


def _run_serial(
    order: Sequence[Quantum],
    upstream: Mapping[int, set[int]],
    executor: QuantumExecutor,
    tasks: Mapping[str, PreparedTask],
    on_outcome: OnOutcome,
) -> list[QuantumOutcome]:
    done: dict[int, QuantumOutcome] = {}

    def state_of(i: int) -> QuantumState | None:
        return done[i].status if i in done else None

    for q in order:
        cause = blocking_upstream(upstream[q.index], state_of)
        if cause is None:
            done[q.index] = executor.execute(q, tasks[q.task_label])
        else:
            done[q.index] = _blocked(q, done[cause])
        on_outcome(done[q.index])
    return [done[q.index] for q in order]


def _run_parallel(
    order: Sequence[Quantum],
    upstream: Mapping[int, set[int]],
    executor: QuantumExecutor,
    tasks: Mapping[str, PreparedTask],
    processes: int,
    on_outcome: OnOutcome,
) -> list[QuantumOutcome]:
    by_index = {q.index: q for q in order}
    _STATE.update(executor=executor, quanta=by_index, tasks=tasks)
    waiting = {i: set(ups) for i, ups in upstream.items()}
    downstream: dict[int, list[int]] = {i: [] for i in by_index}
    for i, ups in upstream.items():
        for u in ups:
            downstream[u].append(i)
    done: dict[int, QuantumOutcome] = {}
    ready = deque(q.index for q in order if not waiting[q.index])
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(processes, mp_context=ctx) as pool:
        running: dict[Future[QuantumOutcome], int] = {}
        while ready or running:
            while ready:
                i = ready.popleft()
                running[pool.submit(_execute_in_child, i)] = i
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                i = running.pop(fut)
                done[i] = fut.result()  # a dead child raises BrokenProcessPool: the job dies
                on_outcome(done[i])
                for d in downstream[i]:
                    if d in done:
                        continue
                    if done[i].status.blocks_downstream:
                        _block_all(d, done[i], by_index, downstream, done, on_outcome)
                        continue
                    waiting[d].discard(i)
                    if not waiting[d]:
                        ready.append(d)
    _STATE.clear()
    return [done[q.index] for q in order]


def _block_all(
    start: int,
    cause: QuantumOutcome,
    by_index: Mapping[int, Quantum],
    downstream: Mapping[int, list[int]],
    done: dict[int, QuantumOutcome],
    on_outcome: OnOutcome,
) -> None:
    stack = [start]
    while stack:
        i = stack.pop()
        if i in done:
            continue
        done[i] = _blocked(by_index[i], cause)
        on_outcome(done[i])
        stack.extend(downstream[i])


def _read_job_graph(
    reader: QuantumGraphReader, job: Mapping[str, Any], quanta: Sequence[int] | None
) -> list[Quantum]:
    """All quanta of a job graph, with their indexes in the whole graph restored."""
    indexes = [int(i) for i in job["indexes"]]
    selected = reader.read_quanta(range(reader.n_quanta))
    for q in selected:
        q.index = indexes[q.index]
    if quanta is not None:
        keep = set(quanta)
        unknown = keep - set(indexes)
        if unknown:
            raise GraphError(f"{reader.path} does not hold quanta {sorted(unknown)[:5]}")
        selected = [q for q in selected if q.index in keep]
    return selected


def run_cluster(
    graph_path: str | Path,
    cluster: str,
    repo: str | Path,
    *,
    result_path: str | Path | None = None,
    processes: int = 1,
    quanta: Sequence[int] | None = None,
    input_records: str | Path | None = None,
    attempt: int = 1,
) -> JobResult:
    """Run the quanta of one cluster and write the job result file.

    Parameters
    ----------
    graph_path : str or Path
        The ``.qgraph`` file: the whole graph, or a job graph written by
        :func:`write_job_graph` (then all its quanta run, with their original indexes, and
        its embedded input records are used).
    cluster : str
        Cluster name (the graph's ``clusters`` or, when ``quanta`` is given, a label).
    repo : str or Path
        Repository root; only its datastore is opened.
    result_path : str or Path, optional
        Where to write the result file (JSON).
    processes : int
        Number of processes running quanta at once (fork; 1 = in this process).
    quanta : sequence of int, optional
        Run only these quantum indexes (retries; clusters planned by the orchestrator).
    input_records : str or Path, optional
        File of the overall inputs' datastore records (see :func:`write_input_records`).
    attempt : int
        Attempt number, recorded in the result.

    Raises
    ------
    ClusterJobError
        If the cluster or quanta are unknown or ``processes`` < 1.
    """
    from rc2_platform.butler import Butler

    if processes < 1:
        raise ClusterJobError(f"--processes must be at least 1, not {processes}")
    start = time.time()
    job_records: dict[uuid.UUID, DatastoreRecord] = {}
    try:
        with QuantumGraphReader(graph_path) as reader:
            job = (reader.header.get("metadata") or {}).get(JOB_METADATA_KEY)
            if job is not None:
                selected = _read_job_graph(reader, job, quanta)
                job_records = _records_from_doc(job.get("input_records") or {})
            elif quanta is not None:
                selected = reader.read_quanta(quanta)
            else:
                selected = reader.read_cluster(cluster)
            summaries = {t.label: t for t in reader.tasks}
            output_run = reader.output_run
    except GraphError as exc:
        raise ClusterJobError(f"cluster job {cluster!r}: {exc}") from None
    job_records.update(load_input_records(input_records))
    rank = {label: i for i, label in enumerate(summaries)}
    order = sorted(selected, key=lambda q: (rank[q.task_label], q.index))
    source = f"graph {graph_path}"
    for summary in summaries.values():  # every class of the graph, before any import
        check_task_class(summary.task_class, summary.label, source)
    tasks = {
        label: PreparedTask(summaries[label], source) for label in {q.task_label for q in order}
    }
    executor = QuantumExecutor(Butler.open_datastore(repo), output_run, job_records)
    upstream = _local_upstream(order)
    writer = (
        RecordsWriter(result_path, _output_dimensions(order)) if result_path is not None else None
    )
    on_outcome: OnOutcome = writer.quantum if writer is not None else _ignore
    try:
        if writer is not None:
            writer.job_started(cluster, attempt, processes, start)
        if processes == 1 or len(order) < 2:
            outcomes = _run_serial(order, upstream, executor, tasks, on_outcome)
        else:
            outcomes = _run_parallel(order, upstream, executor, tasks, processes, on_outcome)
        result = JobResult(
            cluster, attempt, start, time.time(), socket.gethostname(), processes, outcomes
        )
        if writer is not None:
            writer.job_ended(result.end, result.counts())
    finally:
        if writer is not None:
            writer.close()
    return result


def _output_dimensions(quanta: Sequence[Quantum]) -> dict[str, tuple[str, ...]]:
    """Dimensions of the output dataset types of ``quanta``, by name (for the manifest)."""
    return {
        ref.dataset_type.name: tuple(ref.dataset_type.dimensions)
        for q in quanta
        for ref in q.all_outputs()
    }


def _ignore(_outcome: QuantumOutcome) -> None:
    return None
