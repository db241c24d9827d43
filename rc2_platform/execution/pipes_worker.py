"""Worker side of Dagster Pipes: ``rc2 run-cluster`` reporting back to Dagster.

Batch nodes run ``python -m rc2_platform.execution.pipes_worker run-cluster GRAPH
--cluster NAME ...`` (the HTCondor and Kubernetes Pipes clients put this prefix in front
of the usual ``run-cluster`` arguments). When the Dagster Pipes environment variables are
present, the cluster job runs inside ``dagster_pipes.open_dagster_pipes()``: its log
lines and a per-cluster summary (quanta per state, seconds, host, attempt) go back to the
Dagster step through the Pipes message channel. Without them, it is exactly
``rc2 run-cluster``.

This module imports only ``dagster_pipes``, the dependency-free protocol package — not
``dagster`` itself — so it is allowed below ``rc2_platform/defs/``; batch nodes need
neither the Dagster database nor the registry.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["cluster_summary", "main", "pipes_requested"]

#: Environment variable carrying the Pipes context (set by every Pipes client).
CONTEXT_ENV = "DAGSTER_PIPES_CONTEXT"
#: Custom message kind the orchestrating side looks for.
SUMMARY_KIND = "rc2_cluster_summary"


def pipes_requested() -> bool:
    """True when this process was launched by a Dagster Pipes client."""
    return bool(os.environ.get(CONTEXT_ENV))


def _option(argv: Sequence[str], name: str) -> str | None:
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def cluster_summary(result_path: str | Path) -> dict[str, Any]:
    """Per-cluster summary of a job result file: quanta per state, errors, timing, host."""
    from rc2_platform.execution.job import JobResult, error_summary

    result = JobResult.read(result_path)
    errors = error_summary(result.outcomes)
    return {
        "kind": SUMMARY_KIND,
        "cluster": result.cluster,
        "attempt": result.attempt,
        "host": result.host,
        "seconds": round(result.end - result.start, 3),
        "counts": result.counts(),
        "errors": errors,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rc2_platform.execution.pipes_worker")
    parser.add_argument("command", choices=["run-cluster"])
    parser.add_argument("graph")
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--attempt", type=int, default=1)
    parser.add_argument("--quanta-file")
    parser.add_argument("--input-records")
    return parser


def _run_cluster(argv: Sequence[str]) -> int:
    """Same arguments and behaviour as ``rc2 run-cluster`` (exit 0 once the result is written)."""
    from rc2_platform.errors import Rc2Error
    from rc2_platform.execution.job import run_cluster

    args = _parser().parse_args(list(argv))
    quanta = json.loads(Path(args.quanta_file).read_text()) if args.quanta_file else None
    try:
        run_cluster(
            args.graph, args.cluster, args.repo, result_path=args.result,
            processes=args.processes, quanta=quanta, input_records=args.input_records,
            attempt=args.attempt,
        )  # fmt: skip
    except Rc2Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rc2 ARGV`` (``run-cluster ...``), reporting through Pipes when requested."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not pipes_requested():
        return _run_cluster(argv)
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        cluster = _option(argv, "--cluster") or "?"
        pipes.log.info(f"rc2 cluster job {cluster} starting on {os.uname().nodename}")
        code = _run_cluster(argv)
        result = _option(argv, "--result")
        if result and Path(result).exists():
            summary = cluster_summary(result)
            pipes.log.info(f"cluster {cluster}: {json.dumps(summary['counts'], sort_keys=True)}")
            for text, n in summary["errors"].items():
                pipes.log.warning(f"cluster {cluster}: {n} quanta failed: {text}")
            pipes.report_custom_message(summary)
        else:
            pipes.log.error(f"cluster {cluster}: no result file (exit code {code})")
            pipes.report_custom_message({"kind": SUMMARY_KIND, "cluster": cluster, "exit": code})
    return code


if __name__ == "__main__":
    sys.exit(main())
