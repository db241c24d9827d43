"""Errors raised by the science algorithms when the data cannot be processed."""

from __future__ import annotations

from rc2_platform.errors import TaskError


class TaskDataError(TaskError):
    """The pixels or catalogs given to an algorithm cannot be processed.

    Raised for data problems an operator can act on (an all-NaN image, a saturated
    frame, no stars, too few reference matches), never for programming errors. The
    message says what was wrong, with the numbers, and what to check.

    Parameters
    ----------
    message : str
        One-line description of the problem.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
