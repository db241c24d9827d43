"""Errors raised by the science algorithms when the data cannot be processed.

:class:`TaskDataError` is defined in :mod:`rc2_platform.errors` (the execution layer's
retry rule and the stand-in tasks name it too) and re-exported here for the algorithms.
"""

from __future__ import annotations

from rc2_platform.errors import TaskDataError

__all__ = ["TaskDataError"]
