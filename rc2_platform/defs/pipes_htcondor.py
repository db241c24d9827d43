"""A Dagster Pipes client that runs cluster jobs on HTCondor through the execution backend.

:class:`PipesHTCondorClient` submits one :class:`~rc2_platform.execution.backends.ClusterJob`
with :class:`~rc2_platform.execution.backends.htcondor.HTCondorBackend` (submit
description, memory-escalating retries, job event log: all the backend's), waits for it
through the event log, and wires Dagster Pipes around it:

- context: ``PipesEnvContextInjector`` — the Pipes bootstrap variables go into the job's
  ``environment`` submit command, so the batch node needs no Dagster database;
- messages: ``PipesFileMessageReader`` on a file in the job's folder inside the
  repository (``REPO/_runs/.../jobs/<cluster>/attempt<N>/pipes_messages.jsonl``), which
  execution points see on the shared filesystem like the datastore itself.

The worker side is :mod:`rc2_platform.execution.pipes_worker`.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg

from rc2_platform.execution.backends import Backend, ClusterJob, JobHandle, JobStatus

__all__ = ["PipesClusterInvocation", "PipesHTCondorClient", "pipes_worker_prefix"]


def pipes_worker_prefix(python: str | None = None) -> list[str]:
    """Command prefix running the Pipes-aware worker (``... run-cluster GRAPH ...``)."""
    return [python or sys.executable, "-m", "rc2_platform.execution.pipes_worker"]


class PipesClusterInvocation(dg.PipesClientCompletedInvocation):
    """A completed Pipes invocation that also knows the job's handle and final status."""

    def __init__(self, session: Any, handle: JobHandle, status: JobStatus) -> None:
        super().__init__(session, metadata={"job_id": handle.id, "job_state": status.state.value})
        self.handle = handle
        self.status = status

    def summaries(self) -> list[dict[str, Any]]:
        """The per-cluster summaries the worker reported (see ``pipes_worker``)."""
        return [m for m in self.get_custom_messages() if isinstance(m, dict)]


class PipesHTCondorClient(dg.PipesClient):
    """Run cluster jobs on HTCondor with Dagster Pipes.

    Parameters
    ----------
    backend : Backend, optional
        The HTCondor backend (tests: one over ``LocalScheddDouble``); built lazily from
        the execution config when omitted.
    poll_seconds : float
        Pause between event-log reads while waiting.
    python : str, optional
        Python on the execution points (the orchestrator's own by default).
    backend_factory : callable, optional
        Builds the backend when ``backend`` is None (receives the execution config).
    """

    def __init__(
        self,
        backend: Backend | None = None,
        poll_seconds: float = 2.0,
        python: str | None = None,
        backend_factory: Callable[[Any], Backend] | None = None,
    ) -> None:
        self.backend = backend
        self.poll_seconds = poll_seconds
        self.python = python
        self.backend_factory = backend_factory

    @classmethod
    def _is_dagster_maintained(cls) -> bool:
        return False

    def get_backend(self, config: Any) -> Backend:
        """The backend to submit to (built from the execution config on first use)."""
        if self.backend is None:
            if self.backend_factory is not None:
                self.backend = self.backend_factory(config)
            else:
                from rc2_platform.execution.backends import make_backend

                self.backend = make_backend(config, "htcondor")
        return self.backend

    def worker_prefix(self) -> list[str]:
        """Command prefix of the Pipes-aware worker on execution points."""
        return pipes_worker_prefix(self.python)

    def run(  # type: ignore[override]
        self,
        *,
        context: dg.OpExecutionContext | dg.AssetExecutionContext,
        job: ClusterJob,
        extras: Mapping[str, Any] | None = None,
        on_submitted: Callable[[JobHandle], None] | None = None,
        config: Any = None,
    ) -> PipesClusterInvocation:
        """Submit ``job`` with the Pipes bootstrap variables, wait, and collect messages.

        Returns
        -------
        PipesClusterInvocation
            With the job handle, its final status and the worker's reports.
        """
        backend = self.get_backend(config)
        messages = job.log_dir / "pipes_messages.jsonl"
        job.log_dir.mkdir(parents=True, exist_ok=True)
        with dg.open_pipes_session(
            context=context,
            extras=dict(extras or {}),
            context_injector=dg.PipesEnvContextInjector(),
            message_reader=dg.PipesFileMessageReader(str(messages)),
        ) as session:
            env = {**job.env, **session.get_bootstrap_env_vars()}
            (handle,) = backend.submit([dataclasses.replace(job, env=env)])
            if on_submitted is not None:
                on_submitted(handle)
            context.log.info(f"cluster {job.name}: HTCondor job {handle.id} submitted")
            status = backend.wait([handle], poll_seconds=self.poll_seconds)[handle.id]
        return PipesClusterInvocation(session, handle, status)

    def launcher(
        self,
        context: dg.OpExecutionContext,
        config: Any,
        extras: Mapping[str, Any] | None = None,
        reports: list[dict[str, Any]] | None = None,
    ) -> Callable[[ClusterJob, Callable[[JobHandle], None]], tuple[JobHandle, JobStatus]]:
        """A launcher for :func:`rc2_platform.execution.stages.run_cluster_job`."""

        def launch(
            job: ClusterJob, on_submitted: Callable[[JobHandle], None]
        ) -> tuple[JobHandle, JobStatus]:
            invocation = self.run(
                context=context, job=job, extras=extras, on_submitted=on_submitted, config=config
            )
            if reports is not None:
                reports.extend(invocation.summaries())
            return invocation.handle, invocation.status

        return launch
