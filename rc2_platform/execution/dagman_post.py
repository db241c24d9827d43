"""The POST script of a DAGMan cluster node: settle the attempt its job ran, decide on a retry.

``rc2 submit --dagman`` gives every cluster node a POST script and a ``RETRY`` line::

    SCRIPT POST <node> rc2 dagman-post REPO RUN <node> --attempt N --return $RETURN \\
        --retry $RETRY --max-retries $MAX_RETRIES
    RETRY <node> M UNLESS-EXIT 2

(one line; ``M`` is the retry policy's count for the node's tasks, the largest). DAGMan
runs the script after every run of the node's job and takes its exit status as the
node's; ``RETRY`` reruns job and script. Run R of the node (``$RETRY`` = R, 0 the first
time) runs attempt N + R of the cluster: its job is started with ``--dag-retry
$(rc2_retry)`` (``VARS``) and finds that attempt's job graph where the previous run's
POST script prepared it.

:func:`settle_dag_node` settles that attempt in the run-state machine exactly as the
local loop settles a finished job (journal ``job_finished``; failures counted against
each task's ``retry.tasks`` / ``retry.max_retries``; ``retry.not_retried`` errors final)
and returns the node's verdict, the script's exit status:

* :attr:`PostVerdict.RETRY` (1): some quanta failed with a retriable error, or the job
  died, and the node has DAG retries left. The next attempt (those quanta and the ones
  blocked behind them in the cluster, nothing that succeeded) is prepared and journaled
  (``retry_scheduled``, ``job_submitted``); DAGMan reruns the node.
* :attr:`PostVerdict.DONE` (0): every quantum succeeded, or the failures are final (not
  retried by the policy, or retries used up). The node succeeds and its children run;
  the quanta behind a failure are blocked there (their job finds an upstream output
  missing), as in the other drivers.
* :attr:`PostVerdict.FAILED` (2): the job died (quanta without a record) and nothing is
  left to retry. The node fails (``UNLESS-EXIT 2``: no further retry) and its children
  do not run, as before POST scripts existed; the FINAL node settles the RUN.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rc2_platform.errors import ClusterJobError, ExecutionError
from rc2_platform.execution.attempts import (
    JOB_DIED,
    JobAttempt,
    Settlement,
    WorkerSettings,
    job_finished_fields,
)
from rc2_platform.execution.backends import JobState, JobStatus
from rc2_platform.execution.execution_config import ExecutionConfig, load_execution_config
from rc2_platform.execution.journal import Journal
from rc2_platform.execution.quantum_state import QuantumState
from rc2_platform.execution.records import RECORDS_FILE, JobResult
from rc2_platform.execution.run_state import RunState
from rc2_platform.execution.runner import worker_command

if TYPE_CHECKING:
    from rc2_platform.execution.backends.htcondor import Hold

__all__ = [
    "NodeSettlement",
    "PostVerdict",
    "load_dag_state",
    "node_job",
    "node_jobs",
    "post_command",
    "settle_dag_node",
]

#: DAGMan's ``$RETURN`` of a node job removed from the queue.
_REMOVED = -1002

#: What DAGMan's ``$RETURN`` says of a job that never ran to an exit status.
_SPECIAL_RETURNS = {
    -1001: (JobState.FAILED, "the node job's batch submission failed"),
    _REMOVED: (JobState.REMOVED, "the node job was removed from the queue"),
    -1004: (JobState.FAILED, "the node's PRE script failed"),
}


class PostVerdict(enum.IntEnum):
    """The exit status of a node's POST script: what DAGMan does with the node."""

    DONE = 0
    """The node succeeded: its children run."""
    RETRY = 1
    """The node failed and is retried: its next attempt is prepared."""
    FAILED = 2
    """The node failed for good (the DAG's ``RETRY ... UNLESS-EXIT 2``)."""


@dataclass
class NodeSettlement:
    """What the POST script of one node run concluded.

    Attributes
    ----------
    cluster : str
        The node (cluster) name.
    attempt : int
        The attempt its job ran.
    verdict : PostVerdict
        The script's exit status.
    counts : dict
        Quanta of the attempt per outcome (``succeeded``, ``failed``, ``blocked``).
    died : bool
        The job ended without recording some of its quanta.
    retry : JobAttempt or None
        The prepared next attempt (with :attr:`PostVerdict.RETRY`).
    final_failures : list of dict
        The failed quanta that are not retried (task, data ID, error, type, attempt).
    """

    cluster: str
    attempt: int
    verdict: PostVerdict
    counts: dict[str, int]
    died: bool
    retry: JobAttempt | None = None
    final_failures: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the script's output (DAGMan's node log)."""
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items() if v)
        text = f"cluster {self.cluster} attempt {self.attempt}: {counts or 'no quanta'}"
        if self.verdict is PostVerdict.RETRY and self.retry is not None:
            return f"{text}; retry: attempt {self.retry.attempt} ({len(self.retry.quanta)} quanta)"
        if self.verdict is PostVerdict.FAILED:
            return f"{text}; the job died and nothing is left to retry: node failed"
        return f"{text}; done"


def post_command(
    prefix: Sequence[str], repo: str | Path, run: str, cluster: str, first_attempt: int
) -> list[str]:
    """The ``SCRIPT POST`` command of a cluster node (DAGMan's macros as words)."""
    return [
        *prefix, "dagman-post", str(repo), run, cluster,
        "--attempt", str(first_attempt),
        "--return", "$RETURN", "--retry", "$RETRY", "--max-retries", "$MAX_RETRIES",
    ]  # fmt: skip


def load_dag_state(repo: str | Path, run: str) -> tuple[Journal, RunState]:
    """The journal and a fresh run state of a DAGMan run, with the config it was submitted with.

    Raises
    ------
    RunNotFoundError
        If ``run`` has no journal in ``repo``.
    ExecutionError
        If the journal has no ``run_started`` event.
    """
    journal = Journal.for_run(repo, run, must_exist=True)
    started = journal.last("run_started")
    if started is None:
        raise ExecutionError(f"the journal of RUN {run!r} has no run_started event; submit it")
    options = journal.last("options") or {}
    if options.get("config"):
        config = ExecutionConfig.model_validate(options["config"])
    else:  # journals written before the submission recorded its config
        config = load_execution_config(options.get("config_path"))
    worker = WorkerSettings(list(worker_command()), int(started["processes"]), "htcondor")
    return journal, RunState.load(started["graph"], repo, config, worker)


def settle_dag_node(
    repo: str | Path,
    run: str,
    cluster: str,
    *,
    first_attempt: int,
    exit_code: int,
    retry: int,
    max_retries: int,
) -> NodeSettlement:
    """Settle the attempt a DAG node's job ran and decide the node's fate (module docstring).

    Parameters
    ----------
    repo : str or Path
        Repository root.
    run : str
        The RUN.
    cluster : str
        The node's cluster.
    first_attempt : int
        The attempt the node's first run ran (its job's ``--attempt``).
    exit_code : int
        The node job's exit status (DAGMan's ``$RETURN``; negative: a signal, -1001 /
        -1002: submission failed / removed).
    retry : int
        The node's retries so far (``$RETRY``): the attempt settled is
        ``first_attempt + retry``.
    max_retries : int
        The node's ``RETRY`` count (``$MAX_RETRIES``).

    Running it again settles nothing twice (DAGMan's recovery): it returns the verdict
    already journaled; and it completes what a run of it that died half-way left undone
    (an attempt settled but its retry not journaled): see :func:`_settle_attempt`.

    Raises
    ------
    ExecutionError
        If the journal has no such attempt of ``cluster``.
    """
    number = first_attempt + retry
    if exit_code == 0:
        done = _all_succeeded(Journal.for_run(repo, run, must_exist=True), cluster, number)
        if done is not None:
            return done
    journal, state = load_dag_state(repo, run)
    events = _node_events(journal, "job_submitted", cluster, first_attempt)
    finished = _node_events(journal, "job_finished", cluster, first_attempt)
    for earlier in range(first_attempt, number):
        if earlier not in events:
            break
        if earlier + 1 in events:  # failures of the node's earlier runs count against retries
            _count_failures(state, events[earlier])
            continue
        if earlier != number - 1:
            break
        # The previous run's POST script died before journaling the retry (DAGMan counted
        # the node as failed and reran it): settle that attempt again, prepare its retry.
        lost = JobStatus(JobState.FAILED, None, "its POST script did not finish")
        redone = _settle_attempt(
            state, events[earlier], finished.get(earlier), lost,
            retries=earlier - first_attempt < max_retries,
        )  # fmt: skip
        if redone.retry is None:  # that attempt's verdict is the node's
            return _node_settlement(redone)
        events[earlier + 1] = {"attempt": earlier + 1, "restored": redone.retry}
    if number not in events:
        raise ExecutionError(
            f"RUN {run!r} has no attempt {number} of cluster {cluster!r} in its journal "
            f"(first attempt {first_attempt}, DAG retry {retry}); was the DAG submitted "
            "by `rc2 submit --dagman`?"
        )
    if number in finished and number + 1 in events:  # DAGMan ran this script again
        recalled = _recalled(state, _event_attempt(state, events[number]), events[number + 1])
        if recalled.retry is not None and number + 2 not in events:
            _prepare_submit_file(state, recalled.retry)  # the earlier run may have died first
        return recalled
    status = _job_status(exit_code, cluster, *node_job(_event_attempt(state, events[number])))
    settlement = _settle_attempt(
        state, events[number], finished.get(number), status, retries=retry < max_retries
    )
    return _node_settlement(settlement)


def _node_events(
    journal: Journal, kind: str, cluster: str, first_attempt: int
) -> dict[int, dict[str, Any]]:
    """The node's ``kind`` events by attempt (attempts from ``first_attempt`` on)."""
    return {
        int(ev["attempt"]): ev
        for ev in journal.events(kind)
        if ev["cluster"] == cluster and int(ev["attempt"]) >= first_attempt
    }


def _event_attempt(state: RunState, event: dict[str, Any]) -> JobAttempt:
    """The attempt a ``job_submitted`` event describes (or a retry prepared just now)."""
    restored = event.get("restored")
    return restored if isinstance(restored, JobAttempt) else state.restore_attempt(event)


def _settle_attempt(
    state: RunState,
    event: dict[str, Any],
    finished: dict[str, Any] | None,
    status: JobStatus,
    *,
    retries: bool,
) -> Settlement:
    """Settle one attempt of the node and, for a retry, journal and prepare the next one.

    Idempotent: an attempt whose ``job_finished`` is journaled already (its POST script
    died before journaling the retry) is settled again from its records and that event's
    status without journaling it twice, and its retry gets the number the node's next
    run looks for (its folder written again if the dead script had written it).
    """
    attempt = _event_attempt(state, event)
    if finished is not None:
        status = _status_of(finished["status"])
    settlement = state.settle(
        attempt, status, retries=retries, next_attempt=attempt.attempt + 1,
        journaled=finished is not None,
    )  # fmt: skip
    if settlement.retry is not None:
        assert attempt.handle is not None  # restored from its job_submitted event
        state.submitted(settlement.retry, attempt.handle)
        _prepare_submit_file(state, settlement.retry)
    return settlement


def _status_of(data: dict[str, Any]) -> JobStatus:
    """The :class:`JobStatus` a ``job_finished`` event recorded."""
    return JobStatus(
        JobState(data["state"]), data.get("exit_code"), data.get("reason"),
        int(data.get("attempts") or 0), bool(data.get("retryable", True)),
        bool(data.get("memory_exceeded", False)), bool(data.get("escalated_in_queue", False)),
    )  # fmt: skip


def _submit_file(attempt: JobAttempt) -> Path | None:
    """The node's submit file (None for an attempt not submitted as a DAG node)."""
    from rc2_platform.execution.backends.htcondor import node_submit_file

    dag = attempt.handle.info.get("dag") if attempt.handle else None
    return node_submit_file(Path(dag), attempt.cluster) if dag else None


def _prepare_submit_file(state: RunState, retry: JobAttempt) -> None:
    """Point the node's submit file at the retry: its memory, its stdout/stderr files."""
    from rc2_platform.execution.backends.htcondor import prepare_node_retry

    path = _submit_file(retry)
    if path is not None and path.exists():
        prepare_node_retry(
            path, memory_mb=retry.memory_mb, directory=retry.directory, retry=state.config.retry
        )


def node_jobs(attempt: JobAttempt) -> list[tuple[str, JobStatus, Hold | None]]:
    """Every job of ``attempt``'s DAG node, one per run of the node, in order: job id,
    status and the hold it is in (or was removed in).

    Read from the node's job event log (the submit file's ``log``: one log for every run
    of the node); empty when the attempt is not a DAG node's or no job of it ran.
    """
    import htcondor2

    from rc2_platform.execution.backends.htcondor import read_event_log_holds

    path = _submit_file(attempt)
    if path is None or not path.exists():
        return []
    log = Path(htcondor2.Submit(path.read_text())["log"])
    statuses, holds = read_event_log_holds(log, held_only=False)
    order = sorted(statuses, key=lambda k: tuple(int(p) for p in k.split(".")))
    return [(job_id, statuses[job_id], holds.get(job_id)) for job_id in order]


def node_job(attempt: JobAttempt) -> tuple[str, JobStatus | None, Hold | None]:
    """The id, status and hold of the latest job of ``attempt``'s DAG node
    (:func:`node_jobs`); ``("", None, None)`` if there is none."""
    jobs = node_jobs(attempt)
    return jobs[-1] if jobs else ("", None, None)


def _all_succeeded(journal: Journal, cluster: str, number: int) -> NodeSettlement | None:
    """The common case without loading the graph: attempt ``number`` of ``cluster``, not
    settled yet, whose job exited 0 and recorded every one of its quanta as succeeded.

    Journals the ``job_finished`` event :meth:`RunState.settle` would write and returns
    the node's DONE; None when the attempt needs the run-state machine (a failure, a
    quantum not recorded, already settled, not in the journal). Loading the graph is most
    of a POST script's cost (3.5 CPU-s for tract 9615's 20,727 quanta), paid once per
    node without this.
    """
    submitted, settled = None, False
    for ev in journal.events():
        if ev["event"] == "run_started":  # only this execution's events count
            submitted, settled = None, False
        elif ev.get("cluster") != cluster or int(ev.get("attempt") or 0) != number:
            continue
        elif ev["event"] == "job_finished":
            settled = True
        elif ev["event"] == "job_submitted":
            submitted = ev
    if submitted is None or settled:  # settled already: a POST script run again
        return None
    quanta = [int(q[0]) for q in submitted["quanta"]]
    path = Path(submitted["directory"]) / RECORDS_FILE
    try:
        recorded = {o.index: o.status for o in JobResult.read(path).outcomes}
    except (ClusterJobError, OSError):
        return None
    if not quanta or any(recorded.get(i) is not QuantumState.SUCCEEDED for i in quanta):
        return None
    status = JobStatus(JobState.SUCCEEDED, 0)
    fields = job_finished_fields(cluster, number, status, path, [], path.parent)
    journal.append("job_finished", **fields)
    counts = {s.value: 0 for s in (QuantumState.FAILED, QuantumState.BLOCKED)}
    counts = {QuantumState.SUCCEEDED.value: len(quanta), **counts}  # as the full path's
    return NodeSettlement(cluster, number, PostVerdict.DONE, counts, False)


def _count_failures(state: RunState, event: dict[str, Any]) -> None:
    earlier = state.restore_attempt(event)
    outcomes, _died = state.read_outcomes(earlier, None)
    state.forget(earlier)
    state.note_failures(outcomes)


def _job_status(
    exit_code: int,
    cluster: str = "",
    job_id: str = "",
    job: JobStatus | None = None,
    hold: Hold | None = None,
) -> JobStatus:
    """How the node's job ended: DAGMan's ``$RETURN``, and its event log for a removed job
    (the hold it was removed in: for memory, or for good)."""
    from rc2_platform.execution.backends.htcondor.holds import held_line, is_memory_hold

    if exit_code == 0:
        return JobStatus(JobState.SUCCEEDED, 0)
    starts = job.attempts if job is not None else 0
    # A job that left the queue in a hold: DAGMan's $RETURN for it, or its event log.
    removed = exit_code == _REMOVED or (job is not None and job.state is JobState.REMOVED)
    if removed and hold is not None and is_memory_hold(hold):
        return JobStatus(
            JobState.FAILED, None,
            f"held for memory at its start {starts} and removed, its in-queue memory "
            f"retries used up: {hold.reason} (DAGMan $RETURN {exit_code})",
            starts, memory_exceeded=True, escalated_in_queue=True,
        )  # fmt: skip
    if removed and hold is not None:  # its periodic_remove after the grace
        line = held_line(cluster, job_id, hold, None)
        return JobStatus(
            JobState.FAILED, None,
            f"{line}; job removed, nobody released it within "
            "backends.htcondor.hold_grace_seconds: fix the cause, then `rc2 restart`",
            starts, retryable=False,
        )  # fmt: skip
    if exit_code in _SPECIAL_RETURNS:
        job_state, reason = _SPECIAL_RETURNS[exit_code]
        return JobStatus(job_state, None, f"{reason} (DAGMan $RETURN {exit_code})")
    if exit_code < 0:
        return JobStatus(JobState.FAILED, exit_code, f"killed by signal {-exit_code}")
    return JobStatus(JobState.FAILED, exit_code, f"exit code {exit_code}")


def _node_settlement(settlement: Settlement) -> NodeSettlement:
    attempt = settlement.attempt
    died = any(o.error_type == JOB_DIED for o in settlement.outcomes)
    if settlement.retry is not None:
        verdict = PostVerdict.RETRY
    else:
        verdict = PostVerdict.FAILED if died else PostVerdict.DONE
    counts = {s.value: 0 for s in (QuantumState.SUCCEEDED, QuantumState.FAILED,
                                   QuantumState.BLOCKED)}  # fmt: skip
    for o in settlement.outcomes:
        counts[o.status.value] = counts.get(o.status.value, 0) + 1
    return NodeSettlement(
        attempt.cluster, attempt.attempt, verdict, counts, died, settlement.retry,
        settlement.final_failures(),
    )  # fmt: skip


def _recalled(
    state: RunState, attempt: JobAttempt, retry_event: dict[str, Any] | None
) -> NodeSettlement:
    """The verdict an earlier run of this POST script reached (from the journal)."""
    outcomes, _died = state.read_outcomes(attempt, None)
    state.forget(attempt)
    settlement = Settlement(attempt, outcomes, False)
    if retry_event is not None:
        settlement.retry = state.restore_attempt(retry_event)
    return _node_settlement(settlement)
