"""The one worker entry point: ``run-cluster GRAPH --cluster NAME --repo REPO --result FILE``.

Every cluster job runs this, however it starts: ``rc2 run-cluster ...`` (the CLI passes
its arguments through), ``python -m rc2_platform.execution.worker run-cluster ...``, the
Dagster Pipes worker (:mod:`~rc2_platform.execution.pipes_worker`, which wraps it in a
Pipes session) and the local backend's fork server (which calls :func:`main` in the
forked child). It parses the arguments, runs the cluster's quanta
(:func:`~rc2_platform.execution.job.run_cluster`) and prints one summary line.

A DAGMan node passes ``--dag-retry $(rc2_retry)`` (DAGMan's ``$(RETRY)`` through the
node's ``VARS``): its retry R runs attempt ``--attempt`` + R, whose job graph the node's
POST script (``rc2 dagman-post``) prepared in ``.../attempt<N+R>/`` beside the first
attempt's folder, and writes its records there.

Exit status: 0 once the job's records are written, whatever the quanta's outcomes
(quantum failures are data); 1 when the job cannot start (an unreadable graph, unknown
cluster or quanta, a DAG retry with no prepared attempt; one line on stderr); 2 for a
usage error (argparse).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["COMMAND", "WorkerArgs", "main", "parse_args", "run"]

#: The worker's (only) command word: ``[rc2 | python -m ...worker] run-cluster ...``.
COMMAND = "run-cluster"


@dataclass(frozen=True)
class WorkerArgs:
    """The parsed arguments of one cluster job."""

    graph: Path
    cluster: str
    repo: Path
    result: Path
    processes: int = 1
    attempt: int = 1
    quanta_file: Path | None = None
    input_records: Path | None = None
    dag_retry: int = 0

    def for_dag_retry(self) -> WorkerArgs:
        """The arguments of the attempt a DAG retry runs (``--dag-retry R``: attempt + R).

        Its folder is the first attempt's sibling ``attempt<N+R>`` (job graph
        ``job.qgraph``, records under the same file name); R = 0 changes nothing.
        """
        if not self.dag_retry:
            return self
        attempt = self.attempt + self.dag_retry
        folder = self.result.parent.parent / f"attempt{attempt}"
        return WorkerArgs(
            folder / "job.qgraph", self.cluster, self.repo, folder / self.result.name,
            self.processes, attempt, None, self.input_records,
        )  # fmt: skip


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rc2 run-cluster",
        description="Worker entry point: run one cluster's quanta and write the job's "
        "per-quantum records (JSON lines). Exits 0 once they are written, whatever the "
        "quanta's outcomes.",
    )
    parser.add_argument("graph", type=Path, help="the job graph (or a whole graph)")
    parser.add_argument("--cluster", required=True, help="cluster name")
    parser.add_argument("--repo", required=True, type=Path, help="repository root")
    parser.add_argument("--result", required=True, type=Path, help="records file to write")
    parser.add_argument("--processes", type=_positive, default=1, help="processes (fork)")
    parser.add_argument("--attempt", type=_positive, default=1, help="attempt number")
    parser.add_argument("--quanta-file", type=Path, help="JSON list of quantum indexes")
    parser.add_argument("--input-records", type=Path, help="overall inputs' records file")
    parser.add_argument(
        "--dag-retry", type=_non_negative, default=0,
        help="DAGMan retry count of the node ($(RETRY)): run attempt ATTEMPT+R, prepared "
        "by the node's POST script in the sibling folder attempt<ATTEMPT+R>",
    )  # fmt: skip
    return parser


def parse_args(argv: Sequence[str]) -> WorkerArgs:
    """Parse ``run-cluster ARGS`` (the leading command word is optional).

    Raises
    ------
    SystemExit
        With status 2 and argparse's message on stderr, for a usage error or a missing file.
    """
    args = list(argv)
    if args and args[0] == COMMAND:
        args = args[1:]
    parser = _parser()
    ns = parser.parse_args(args)
    for name in ("graph", "quanta_file", "input_records"):
        path = getattr(ns, name)
        if path is not None and not path.is_file():
            parser.error(f"{name.replace('_', '-')} {path} does not exist or is not a file")
    if not ns.repo.is_dir():
        parser.error(f"--repo {ns.repo} is not a directory")
    return WorkerArgs(
        ns.graph, ns.cluster, ns.repo, ns.result, ns.processes, ns.attempt,
        ns.quanta_file, ns.input_records, ns.dag_retry,
    )  # fmt: skip


def run(args: WorkerArgs) -> int:
    """Run the cluster job; return the exit status (0 once the records are written)."""
    from rc2_platform.errors import Rc2Error
    from rc2_platform.execution.job import run_cluster

    args = args.for_dag_retry()
    if not args.graph.is_file():
        print(
            f"Error: no job graph {args.graph} for attempt {args.attempt} of cluster "
            f"{args.cluster}: the node's POST script prepares it before DAGMan retries the node",
            file=sys.stderr,
        )
        return 1
    try:
        quanta = json.loads(args.quanta_file.read_text()) if args.quanta_file else None
        result = run_cluster(
            args.graph, args.cluster, args.repo, result_path=args.result,
            processes=args.processes, quanta=quanta, input_records=args.input_records,
            attempt=args.attempt,
        )  # fmt: skip
    except (Rc2Error, OSError, ValueError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result.counts().items()))
    print(f"cluster {args.cluster} attempt {args.attempt}: {counts}", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the job; return the exit status."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
