"""The states of a quantum and the one rule that blocks quanta behind a failure.

Every part of execution (the worker inside a job, the run-state machine, the report, the
provenance table) speaks of quanta in these states and decides "blocked" with
:func:`blocking_upstream`; nothing else defines them. See ``docs/execution.md`` for the
state picture::

    PENDING --submit--> RUNNING --record--> SUCCEEDED
       |                   |  \\--record--> FAILED --retry left--> RUNNING
       |                   |                   \\--no retry------> (final)
       |                   \\--upstream output missing--> BLOCKED
       \\--an upstream quantum FAILED or BLOCKED--> BLOCKED
       \\--outputs already registered (--resume)--> SUCCEEDED
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable

__all__ = ["QuantumState", "blocking_upstream"]


class QuantumState(enum.StrEnum):
    """Where one quantum of a RUN stands.

    ``SUCCEEDED``, ``FAILED`` and ``BLOCKED`` are final once the retries a failure is
    allowed are used up; ``FAILED`` and ``BLOCKED`` block every quantum downstream.
    Being a ``str`` enum, members serialize to their value in JSON and Parquet.
    """

    PENDING = "pending"
    """Not started yet (or waiting for its cluster's next attempt)."""
    RUNNING = "running"
    """In a submitted job attempt that has not reported it yet."""
    SUCCEEDED = "succeeded"
    """Ran, and wrote every output (or its outputs were already registered)."""
    FAILED = "failed"
    """Its task raised, or its job died before recording it."""
    BLOCKED = "blocked"
    """Not run: a quantum it reads from failed or is blocked."""

    @property
    def is_final(self) -> bool:
        """True for SUCCEEDED, FAILED and BLOCKED."""
        return self in _FINAL

    @property
    def blocks_downstream(self) -> bool:
        """True for FAILED and BLOCKED: quanta reading this one's outputs are blocked."""
        return self in _BAD


_FINAL = frozenset({QuantumState.SUCCEEDED, QuantumState.FAILED, QuantumState.BLOCKED})
_BAD = frozenset({QuantumState.FAILED, QuantumState.BLOCKED})


def blocking_upstream(
    upstream: Iterable[int], state_of: Callable[[int], QuantumState | None]
) -> int | None:
    """The blocking rule: the first upstream quantum that failed or is blocked, else None.

    A quantum is BLOCKED as soon as one quantum it reads from is FAILED or BLOCKED.
    The run-state machine applies it before submitting a cluster; a worker applies it
    inside a job (and, when an upstream output of the RUN is missing, from the data).

    Parameters
    ----------
    upstream : iterable of int
        Indexes of the quanta whose outputs the quantum reads.
    state_of : callable
        The known state of a quantum index (None when unknown).
    """
    for u in sorted(upstream):
        state = state_of(u)
        if state is not None and state.blocks_downstream:
            return u
    return None
