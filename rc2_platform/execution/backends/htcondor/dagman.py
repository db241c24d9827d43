"""Whole-graph submission as one DAGMan workflow: a ``.dag`` file plus per-node submit files.

One DAG node per cluster job; ``PARENT ... CHILD`` lines from the job dependencies;
``RETRY`` from each job's ``max_retries``. Memory-killed nodes are retried inside the
queue by the node's own ``periodic_release`` (so ``NumJobStarts`` keeps counting and the
memory keeps escalating); ``RETRY`` covers failed nodes, so node submit files carry no
``max_retries`` of their own.

Every node gets ``VARS <node> rc2_node="<node>" rc2_retry="$(RETRY)"``: its submit file
may use ``$(rc2_retry)``, DAGMan's count of the node's retries so far (0 the first
time). A node may have a ``SCRIPT POST`` (run by DAGMan after each run of the node's
job; the node succeeds when it exits 0, and ``RETRY`` reruns job and POST script), whose
arguments may be DAGMan's script macros as words of their own (``$RETURN``, ``$RETRY``,
``$MAX_RETRIES``, ``$JOB``, ``$JOBID``). DAGMan reads a node's submit file again for
each run of the node, so a POST script that decides on a retry rewrites it for the next
run (:func:`prepare_node_retry`: memory, stdout/stderr files).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import htcondor2

from rc2_platform.errors import JobSubmissionError
from rc2_platform.execution.execution_config import HTCondorSettings, RetryPolicy

from ..base import ClusterJob
from .submit import (
    build_submit_description,
    join_environment,
    memory_request_expression,
    split_environment,
)

__all__ = ["check_dependencies", "node_submit_file", "prepare_node_retry", "write_dag"]


def node_submit_file(dag_path: Path, node: str) -> Path:
    """The submit file :func:`write_dag` writes for ``node`` of the DAG ``dag_path``."""
    return Path(dag_path).parent / "jobs" / f"{node}.sub"


def prepare_node_retry(
    submit_file: Path, *, memory_mb: int, directory: Path, retry: RetryPolicy
) -> None:
    """Rewrite a node's submit file for the node's next run (DAGMan's next ``RETRY``).

    DAGMan reads a node's submit file each time it submits the node's job, so what the
    node's POST script writes here is what the retry runs with: ``request_memory``
    escalating from ``memory_mb`` (the next attempt's memory: more after a job killed or
    held for memory), ``RC2_JOB_MEMORY_MB`` in its environment, and ``output`` /
    ``error`` (same file names) and ``initialdir`` in the next attempt's folder
    ``directory``, so that every attempt has its own stdout and stderr. The job event log
    (``log``) stays where it is: one log for every run of the node. The file is replaced
    atomically (a script killed half-way leaves the old or the new one), and writing it
    twice with the same values gives the same file.
    """
    description = htcondor2.Submit(submit_file.read_text())
    description["request_memory"] = memory_request_expression(memory_mb, retry)
    env = split_environment(description.get("environment") or "")
    if "RC2_JOB_MEMORY_MB" in env:
        env["RC2_JOB_MEMORY_MB"] = str(memory_mb)
        description["environment"] = join_environment(env)
    for key in ("output", "error"):
        if description.get(key):
            description[key] = str(Path(directory) / Path(description[key]).name)
    description["initialdir"] = str(directory)
    Path(directory).mkdir(parents=True, exist_ok=True)
    temporary = submit_file.with_name(f".{submit_file.name}.tmp{os.getpid()}")
    temporary.write_text(str(description))
    os.replace(temporary, submit_file)


def check_dependencies(
    jobs: Sequence[ClusterJob], dependencies: Mapping[str, set[str]]
) -> list[str]:
    """Check job names and dependencies; return the job names in a topological order.

    Raises
    ------
    JobSubmissionError
        For duplicate names, dependencies naming unknown jobs, or a cycle.
    """
    names = [job.name for job in jobs]
    known = set(names)
    if len(known) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise JobSubmissionError(f"Duplicate cluster job names: {dupes}; job names must be unique.")
    for child, parents in dependencies.items():
        unknown = sorted(({child} | set(parents)) - known)
        if unknown:
            raise JobSubmissionError(
                f"Dependencies of job {child!r} name unknown job(s) {unknown}; every parent and "
                "child must be one of the submitted jobs."
            )
    remaining = {name: set(dependencies.get(name, ())) for name in names}
    order: list[str] = []
    ready = [n for n in names if not remaining[n]]
    while ready:
        name = ready.pop(0)
        order.append(name)
        for child, parents in remaining.items():
            if name in parents:
                parents.discard(name)
                if not parents:
                    ready.append(child)
    if len(order) != len(names):
        cyclic = sorted(set(names) - set(order))
        raise JobSubmissionError(f"Job dependencies contain a cycle among {cyclic[:10]}.")
    return order


def write_dag(
    jobs: Sequence[ClusterJob],
    dependencies: Mapping[str, set[str]],
    dag_dir: Path,
    settings: HTCondorSettings | None = None,
    retry: RetryPolicy | None = None,
    dag_name: str = "rc2",
    final: ClusterJob | None = None,
    *,
    post_scripts: Mapping[str, Sequence[str]] | None = None,
    retry_unless_exit: int | None = None,
) -> Path:
    """Write ``<dag_dir>/<dag_name>.dag`` and ``<dag_dir>/jobs/<job>.sub``.

    Parameters
    ----------
    jobs : `~collections.abc.Sequence` [`ClusterJob`]
        One DAG node per job, named after the job.
    dependencies : `~collections.abc.Mapping` [`str`, `set` [`str`]]
        ``{job_name: {parent_name, ...}}``; jobs without an entry have no parents.
    dag_dir : `pathlib.Path`
        Directory for the DAG, node submit files and DAGMan's own files.
    settings, retry
        HTCondor settings and retry policy used for every node's submit description.
    dag_name : `str`
        Base name of the ``.dag`` file.
    final : `ClusterJob`, optional
        A ``FINAL`` node, run once after all other nodes (whether they succeeded or not).
    post_scripts : `~collections.abc.Mapping` [`str`, `~collections.abc.Sequence` [`str`]]
        ``{job_name: command}``: the node's ``SCRIPT POST`` (executable, then arguments;
        no word may hold white space, DAGMan splits the line at spaces).
    retry_unless_exit : `int`, optional
        Written as ``RETRY <node> N UNLESS-EXIT <value>``: a node that exits with this
        value (its POST script's exit status, if it has one) is not retried.

    Returns
    -------
    dag_path : `pathlib.Path`
        The absolute path of the ``.dag`` file.
    """
    order = check_dependencies([*jobs, *([final] if final else [])], dependencies)
    scripts = {name: _script_words(name, cmd) for name, cmd in (post_scripts or {}).items()}
    unknown = sorted(set(scripts) - {job.name for job in jobs})
    if unknown:
        raise JobSubmissionError(f"POST scripts name unknown DAG node(s) {unknown}.")
    unless = "" if retry_unless_exit is None else f" UNLESS-EXIT {retry_unless_exit}"
    order = [name for name in order if final is None or name != final.name]
    by_name = {job.name: job for job in jobs}
    dag_dir = Path(dag_dir).absolute()
    (dag_dir / "jobs").mkdir(parents=True, exist_ok=True)
    lines = [f"# rc2 workflow: {len(jobs)} cluster jobs", f"CONFIG {dag_dir / 'dagman.config'}"]
    (dag_dir / "dagman.config").write_text("DAGMAN_MAX_JOBS_IDLE = 1000\n")
    for name in order:
        job = by_name[name]
        sub_path = node_submit_file(dag_dir / f"{dag_name}.dag", name)
        description = build_submit_description(job, settings, retry, dag_node=True)
        sub_path.write_text(str(description))
        lines.append(f"JOB {name} {sub_path}")
        lines.append(f'VARS {name} rc2_node="{name}" rc2_retry="$(RETRY)"')
        if name in scripts:
            lines.append(f"SCRIPT POST {name} {scripts[name]}")
        if job.max_retries:
            lines.append(f"RETRY {name} {job.max_retries}{unless}")
    if final is not None:
        sub_path = dag_dir / "jobs" / f"{final.name}.sub"
        sub_path.write_text(str(build_submit_description(final, settings, retry, dag_node=True)))
        lines.append(f"FINAL {final.name} {sub_path}")
        lines.append(f'VARS {final.name} rc2_node="{final.name}"')
    for name in order:
        parents = sorted(dependencies.get(name, ()))
        if parents:
            lines.append(f"PARENT {' '.join(parents)} CHILD {name}")
    dag_path = dag_dir / f"{dag_name}.dag"
    dag_path.write_text("\n".join(lines) + "\n")
    return dag_path


def _script_words(node: str, command: Sequence[str]) -> str:
    """A ``SCRIPT`` line's executable and arguments (DAGMan splits them at spaces)."""
    bad = [word for word in command if not word or any(c.isspace() for c in word)]
    if not command or bad:
        raise JobSubmissionError(
            f"POST script of DAG node {node!r}: {list(command)!r} is empty or has words with "
            f"white space ({bad!r}); DAGMan splits a SCRIPT line at spaces, so move the "
            "repository or executable to a path without spaces."
        )
    return " ".join(command)
