"""Pauses between status polls of a remote API: fast after a change, slower while idle."""

from __future__ import annotations

__all__ = ["Backoff"]


class Backoff:
    """The pause before the next poll: ``first`` after a change, doubling while nothing
    changes, never above ``cap``.

    Parameters
    ----------
    first : `float`
        Seconds after a change (and at the start); 0 polls every time.
    cap : `float`
        The longest pause (raised to ``first`` if smaller).
    """

    def __init__(self, first: float, cap: float) -> None:
        self.first = first
        self.cap = max(cap, first)
        self.pause = first

    def next(self, changed: bool) -> float:
        """The pause after a poll that saw a change (or not)."""
        self.pause = self.first if changed else min(self.cap, self.pause * 2)
        return self.pause

    def reset(self) -> None:
        """Start again from ``first`` (new work was submitted)."""
        self.pause = self.first
