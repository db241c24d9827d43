"""The executor of every rc2 job: Dagster's default, with steps that run on their inputs.

``rc2_executor`` is ``multi_or_in_process_executor`` (run config ``execution: {config:
{multiprocess: {...}}}`` or ``{in_process: {}}`` as usual) with
``step_dependency_config.require_upstream_step_success: false`` and (multiprocess) the
``forkserver`` start method preloading ``rc2_platform.defs`` filled in unless the run
config says otherwise: a step starts once the outputs it reads exist, even when the
step that wrote them later failed. A run config without ``in_process``/``multiprocess``
runs in process when every step of the run is an execution step whose driver is
``graph`` on the local backend (the execution job's default: one step runs the whole
graph, so separate step processes would only add their start-up), multiprocess otherwise.

The execution job relies on it. A cluster step whose quanta failed for good yields its
outcome and *then* fails (red, with the task, data ID and exception), so the next stage's
planning step still runs, blocks what reads the failure and runs everything else; the
run ends ``Failure`` and "Re-execute from failure" re-runs the failed steps and their
downstream steps. Steps that produce nothing when they fail (every asset returning a
``MaterializeResult`` at its end) stop their downstream steps exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg

from rc2_platform.monitor.checks import VALIDATION_MODULES

__all__ = [
    "EXECUTION_STEP_PREFIX",
    "FORKSERVER",
    "PRELOAD",
    "REGISTRY_POOL",
    "RUN_ON_INPUTS",
    "rc2_executor",
    "whole_graph_run",
]

#: The concurrency pool of the steps that write the registry in bulk (ingest assets, RUN
#: registration, the end of an execution run); its limit is the instance's
#: ``concurrency.pools.default_limit`` (1 for SQLite, more for PostgreSQL) unless set with
#: ``dagster instance concurrency set rc2_registry N``.
REGISTRY_POOL = "rc2_registry"

#: The step-dependency rule filled in for every run.
RUN_ON_INPUTS = {"require_upstream_step_success": False}


#: Modules the step fork server imports once: Dagster's multiprocess module (Dagster puts
#: it first), the definitions (and with them the Butler and the execution library), what
#: the definitions import only when a step needs it (the ingest package; the validation of
#: the asset checks) and what a step's cluster job loads — the job is forked from the step
#: (``launcher: fork``, see ``whole_graph_step.fork_in_step``), so it starts with them too.
PRELOAD = (
    "dagster._core.executor.multiprocess",
    "rc2_platform.defs",
    "rc2_platform.ingest",
    *VALIDATION_MODULES,
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
    :data:`FORKSERVER`) unless given, defaults filled in."""
    config = dict(config or {}) or {"multiprocess": {}}
    ((kind, inner),) = config.items()
    inner = dict(inner or {})
    inner.setdefault("step_dependency_config", dict(RUN_ON_INPUTS))
    inner.setdefault("retries", {"enabled": {}})
    if kind == "multiprocess":
        inner.setdefault("start_method", FORKSERVER)
        inner.setdefault("max_concurrent", None)
    return {kind: inner}


#: Step keys of the execution steps (the ``pipeline_outputs`` graph-backed asset).
EXECUTION_STEP_PREFIX = "pipeline_outputs."


def whole_graph_run(run_config: Mapping[str, Any]) -> bool:
    """Whether a run's execution steps drive whole graphs (``driver: graph`` on the local
    backend, the execution job's default): ``prepare_execution``'s config, else defaults."""
    from rc2_platform.execution.execution_config import load_execution_config

    ops = run_config.get("ops") or {}
    prepare = ((ops.get("pipeline_outputs") or {}).get("ops") or {}).get("prepare_execution")
    config = dict((prepare or {}).get("config") or {})
    if config.get("driver", "graph") != "graph":
        return False
    backend = config.get("backend") or ""
    if not backend:
        backend = load_execution_config(config.get("execution_config") or None).backends.default
    return bool(backend == "local")


class _ByRun(dg.Executor):
    """In process for runs of whole-graph execution steps only, else multiprocess."""

    def __init__(self, in_process: dg.Executor, multiprocess: dg.Executor) -> None:
        self.in_process, self.multiprocess = in_process, multiprocess

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[Any]:
        keys = list(execution_plan.step_keys_to_execute)
        whole = bool(keys) and all(k.startswith(EXECUTION_STEP_PREFIX) for k in keys)
        chosen = self.in_process if whole and whole_graph_run(plan_context.run_config) else None
        yield from (chosen or self.multiprocess).execute(plan_context, execution_plan)

    @property
    def retries(self) -> Any:
        return self.multiprocess.retries

    @property
    def step_dependency_config(self) -> Any:
        return self.multiprocess.step_dependency_config


def _create(context: dg.InitExecutorContext, config: Mapping[str, Any]) -> dg.Executor:
    inner = dg.InitExecutorContext(
        job=context.job,
        executor_def=dg.multi_or_in_process_executor,
        executor_config=_with_dependency_rule(config),
        instance=context.instance,
    )
    return dg.multi_or_in_process_executor.executor_creation_fn(inner)  # type: ignore[misc]


def _requirements(config: Mapping[str, Any]) -> Sequence[Any]:
    return [] if "in_process" in (config or {}) else dg.multiple_process_executor_requirements()


@dg.executor(name="rc2_executor", config_schema=dg.Permissive(), requirements=_requirements)
def rc2_executor(context: dg.InitExecutorContext) -> dg.Executor:
    """``multi_or_in_process_executor`` whose steps start once the outputs they read exist
    (``step_dependency_config.require_upstream_step_success: false``); multiprocess steps
    fork from a server that preloaded the package. Without ``in_process``/``multiprocess``
    in the run config: in process for a run made only of whole-graph execution steps
    (their one step runs every cluster job; process starts would only add seconds),
    multiprocess otherwise."""
    config = dict(context.executor_config or {})
    if config:
        return _create(context, config)
    return _ByRun(_create(context, {"in_process": {}}), _create(context, {"multiprocess": {}}))
