"""Worker side of Dagster Pipes: ``rc2 run-cluster`` reporting back to Dagster.

Batch nodes run ``python -m rc2_platform.execution.pipes_worker run-cluster GRAPH
--cluster NAME ...`` (the HTCondor and Kubernetes Pipes clients put this prefix in front
of the usual ``run-cluster`` arguments), i.e. the one worker entry point
(:mod:`~rc2_platform.execution.worker`) inside a Pipes session: when the Dagster Pipes
environment variables are present, the cluster job runs inside
``dagster_pipes.open_dagster_pipes()`` and its log lines and a per-cluster summary
(quanta per state, seconds, host, attempt) go back to the Dagster step through the Pipes
message channel. Without them, it is exactly ``rc2 run-cluster``.

This module imports only ``dagster_pipes``, the dependency-free protocol package — not
``dagster`` itself — so it is allowed below ``rc2_platform/defs/``; batch nodes need
neither the Dagster database nor the registry.
"""

from __future__ import annotations

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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the worker (``run-cluster ...``), reporting through Pipes when requested."""
    from rc2_platform.execution import worker

    argv = list(sys.argv[1:] if argv is None else argv)
    if not pipes_requested():
        return worker.main(argv)
    try:
        args = worker.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        cluster = args.cluster
        pipes.log.info(f"rc2 cluster job {cluster} starting on {os.uname().nodename}")
        code = worker.run(args)
        if args.result.exists():
            summary = cluster_summary(args.result)
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
