"""The executor of every rc2 job: Dagster's default, with steps that run on their inputs.

``rc2_executor`` is ``multi_or_in_process_executor`` (run config ``execution: {config:
{multiprocess: {...}}}`` or ``{in_process: {}}`` as usual) with
``step_dependency_config.require_upstream_step_success: false`` and (multiprocess) the
``forkserver`` start method preloading ``rc2_platform.defs`` filled in unless the run
config says otherwise: a step starts once the outputs it reads exist, even when the
step that wrote them later failed.

The execution job relies on it. A cluster step whose quanta failed for good yields its
outcome and *then* fails (red, with the task, data ID and exception), so the next stage's
planning step still runs, blocks what reads the failure and runs everything else; the
run ends ``Failure`` and "Re-execute from failure" re-runs the failed steps and their
downstream steps. Steps that produce nothing when they fail (every asset returning a
``MaterializeResult`` at its end) stop their downstream steps exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

__all__ = ["FORKSERVER", "PRELOAD", "REGISTRY_POOL", "RUN_ON_INPUTS", "rc2_executor"]

#: The concurrency pool of the steps that write the registry in bulk (ingest assets, RUN
#: registration, the end of an execution run); its limit is the instance's
#: ``concurrency.pools.default_limit`` (1 for SQLite, more for PostgreSQL) unless set with
#: ``dagster instance concurrency set rc2_registry N``.
REGISTRY_POOL = "rc2_registry"

#: The step-dependency rule filled in for every run.
RUN_ON_INPUTS = {"require_upstream_step_success": False}


#: Modules the step fork server imports once: Dagster's multiprocess module (Dagster puts
#: it first), the definitions (and with them the Butler and the execution library) and
#: what a step's cluster job loads — the job is forked from the step (``launcher: fork``,
#: see ``execution_assets._fork_in_step``), so it starts with them too.
PRELOAD = (
    "dagster._core.executor.multiprocess",
    "rc2_platform.defs",
    "rc2_platform.execution.worker",
    "rc2_platform.execution.job",
    "rc2_platform.datastore.formatters",
    "astropy.io.fits",
    "astropy.table",
)

#: How multiprocess steps start unless the run config says: forked from a server that
#: imported Dagster and the package once (a spawned step re-imports both: ~3 s of CPU per
#: step, 12-20 s between steps on a loaded 2-core machine; benchmarks/dagster_overhead.py).
FORKSERVER = {"forkserver": {"preload_modules": list(PRELOAD)}}


def _with_dependency_rule(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The default executor's config with :data:`RUN_ON_INPUTS` (and, multiprocess,
    :data:`FORKSERVER`) unless given."""
    config = dict(config or {}) or {"multiprocess": {}}
    ((kind, inner),) = config.items()
    inner = dict(inner or {})
    inner.setdefault("step_dependency_config", dict(RUN_ON_INPUTS))
    if kind == "multiprocess":
        inner.setdefault("start_method", FORKSERVER)
    return {kind: inner}


rc2_executor = dg.multi_or_in_process_executor.configured(
    _with_dependency_rule,
    name="rc2_executor",
    config_schema=dg.Permissive(),
    description=(
        "multi_or_in_process_executor whose steps start once the outputs they read exist "
        "(step_dependency_config.require_upstream_step_success: false)."
    ),
)
