"""HTCondor jobs held for good: which holds rc2 waits out, and when it gives up on the rest.

A held job does not run again until someone releases it. rc2's own memory holds are
released (with more memory) or removed by the job's ``periodic_release`` /
``periodic_remove`` expressions (:mod:`.submit`), and HTCondor releases a job whose input
is still being spooled. Any other hold — a file transfer failure, an initial working
directory that cannot be read, an executable that cannot be started, a user's
``condor_hold``, a ``periodic_hold`` or ``SYSTEM_PERIODIC_HOLD`` of the site — waits for
an operator: :class:`HoldWatch` gives them ``hold_grace_seconds`` to ``condor_release`` it,
then the backend removes the job and reports it FAILED, not retried.
"""

from __future__ import annotations

from collections.abc import Callable

from .event_log import Hold
from .submit import MEMORY_HOLD_SUBCODE

__all__ = [
    "HOLD_CODE_NAMES",
    "REMOVED_HELD_PREFIX",
    "HoldWatch",
    "held_line",
    "is_memory_hold",
    "is_waited_hold",
]

#: HoldReasonCode -> its NumHoldsByReason label (HTCondor manual, "Hold Reason Codes").
HOLD_CODE_NAMES: dict[int, str] = {
    1: "UserRequest",
    3: "JobPolicy",
    4: "CorruptedCredential",
    5: "JobPolicyUndefined",
    6: "FailedToCreateProcess",
    7: "UnableToOpenOutput",
    8: "UnableToOpenInput",
    9: "UnableToOpenOutputStream",
    10: "UnableToOpenInputStream",
    11: "InvalidTransferAck",
    12: "TransferOutputError",
    13: "TransferInputError",
    14: "IwdError",
    15: "SubmittedOnHold",
    16: "SpoolingInput",
    18: "InvalidTransferGoAhead",
    19: "HookPrepareJobFailure",
    21: "StartdHeldJob",
    22: "UnableToInitUserLog",
    23: "FailedToAccessUserAccount",
    26: "SystemPolicy",
    27: "SystemPolicyUndefined",
    32: "MaxTransferInputSizeExceeded",
    33: "MaxTransferOutputSizeExceeded",
    34: "JobOutOfResources",
}

#: HoldReasonCode 16 (SpoolingInput): the schedd releases the job once its input is spooled.
SPOOLING_INPUT = 16

#: The ``condor_rm`` reason of a job rc2 removed because it stayed held starts with this,
#: so that a later reader of the event log (a restarted orchestrator) still sees a failure.
REMOVED_HELD_PREFIX = "rc2 removed the held job: "


def is_memory_hold(hold: Hold) -> bool:
    """Whether the job was held for its memory use: HoldReasonCode 34 (HTCondor's own), or
    3 / 26 (a job / system policy) with rc2's subcode 34 (the job's ``periodic_hold``)."""
    if hold.code == 34:
        return True
    return hold.code in (3, 26) and hold.subcode == MEMORY_HOLD_SUBCODE


def is_waited_hold(hold: Hold) -> bool:
    """Whether HTCondor itself ends this hold: a memory hold (released or removed by the
    job's policy, :func:`is_memory_hold`) or input spooling."""
    return hold.code == SPOOLING_INPUT or is_memory_hold(hold)


def held_line(job_name: str, job_id: str, hold: Hold, held_for: float | None) -> str:
    """One line naming the cluster job, the HTCondor job id, and the hold's code and text
    (and how long it was held, if known)."""
    name = HOLD_CODE_NAMES.get(hold.code) if hold.code is not None else None
    code = f"HoldReasonCode {hold.code}" + (f" [{name}]" if name else "")
    held = "held" if held_for is None else f"held for {held_for:.0f} s"
    return (
        f"cluster job {job_name} (HTCondor job {job_id}) {held}: "
        f"{hold.reason} ({code}, HoldReasonSubCode {hold.subcode})"
    )


class HoldWatch:
    """When each held job was first seen in its current hold, and whether its grace is over.

    Parameters
    ----------
    grace_seconds : `float` or `None`
        How long a hold rc2 does not wait out may last (0: not at all; ``None``: forever).
    clock : callable
        Seconds, monotonic; a hold's time runs from the first time it was seen.
    """

    def __init__(self, grace_seconds: float | None, clock: Callable[[], float]) -> None:
        self.grace_seconds = grace_seconds
        self.clock = clock
        self._since: dict[str, tuple[int, float]] = {}  # job id -> (hold number, first seen)

    def overdue(self, job_id: str, hold: Hold) -> float | None:
        """How long the job has been in ``hold`` if that is past the grace, else ``None``."""
        if self.grace_seconds is None or is_waited_hold(hold):
            return None
        now = self.clock()
        seen = self._since.get(job_id)
        if seen is None or seen[0] != hold.number:  # first seen, or held again after a release
            seen = self._since[job_id] = (hold.number, now)
        held_for = now - seen[1]
        return held_for if held_for >= self.grace_seconds else None

    def forget(self, job_id: str) -> None:
        """Drop the timer of a job that is not held (any more)."""
        self._since.pop(job_id, None)
