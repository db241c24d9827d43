"""Whole-graph submission as one DAGMan workflow: a ``.dag`` file plus per-node submit files.

One DAG node per cluster job; ``PARENT ... CHILD`` lines from the job dependencies;
``RETRY`` from each job's ``max_retries``. Memory-killed nodes are retried inside the
queue by the node's own ``periodic_release`` (so ``NumJobStarts`` keeps counting and the
memory keeps escalating); ``RETRY`` covers non-zero exits, so node submit files carry no
``max_retries`` of their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from rc2_platform.errors import JobSubmissionError
from rc2_platform.execution.execution_config import HTCondorSettings, RetryPolicy

from ..base import ClusterJob
from .submit import build_submit_description

__all__ = ["check_dependencies", "write_dag"]


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

    Returns
    -------
    dag_path : `pathlib.Path`
        The absolute path of the ``.dag`` file.
    """
    order = check_dependencies([*jobs, *([final] if final else [])], dependencies)
    order = [name for name in order if final is None or name != final.name]
    by_name = {job.name: job for job in jobs}
    dag_dir = Path(dag_dir).absolute()
    (dag_dir / "jobs").mkdir(parents=True, exist_ok=True)
    lines = [f"# rc2 workflow: {len(jobs)} cluster jobs", f"CONFIG {dag_dir / 'dagman.config'}"]
    (dag_dir / "dagman.config").write_text("DAGMAN_MAX_JOBS_IDLE = 1000\n")
    for name in order:
        job = by_name[name]
        sub_path = dag_dir / "jobs" / f"{name}.sub"
        description = build_submit_description(job, settings, retry, dag_node=True)
        sub_path.write_text(str(description))
        lines.append(f"JOB {name} {sub_path}")
        lines.append(f'VARS {name} rc2_node="{name}"')
        if job.max_retries:
            lines.append(f"RETRY {name} {job.max_retries}")
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
