"""Half-open TAI time spans, stored as integer nanoseconds."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # astropy.time costs ~0.2 s to import: loaded on first conversion
    from astropy.time import Time

#: Sentinels for unbounded ends; they fit in a signed 64-bit column on every backend.
MIN_NSEC = -(2**62)
MAX_NSEC = 2**62


@functools.cache
def _epoch() -> Time:
    from astropy.time import Time

    return Time("1970-01-01T00:00:00", scale="tai", format="isot")


def time_to_nsec(t: Time) -> int:
    """Convert an astropy Time to integer TAI nanoseconds since 1970-01-01T00:00:00 TAI."""
    delta = t.tai - _epoch()
    # Two-part (jd1, jd2) arithmetic keeps nanosecond precision.
    days = float(delta.jd1) + float(delta.jd2)
    whole = int(round(float(delta.jd1)))
    return whole * 86_400_000_000_000 + int(round((days - whole) * 86_400e9))


def nsec_to_time(nsec: int) -> Time:
    """Inverse of :func:`time_to_nsec`."""
    from astropy import units as u

    return (_epoch() + (nsec // 1_000_000_000) * u.s + (nsec % 1_000_000_000) * u.ns).tai


@dataclass(frozen=True, slots=True)
class Timespan:
    """A half-open interval ``[begin, end)`` of TAI time in integer nanoseconds.

    ``MIN_NSEC`` / ``MAX_NSEC`` stand for an unbounded beginning / end.
    """

    begin_nsec: int = MIN_NSEC
    end_nsec: int = MAX_NSEC

    def __post_init__(self) -> None:
        if self.end_nsec < self.begin_nsec:
            from rc2_platform.errors import Rc2Error

            raise Rc2Error(
                f"timespan ends ({self.end_nsec}) before it begins ({self.begin_nsec}); "
                "give the earlier time first"
            )

    @classmethod
    def from_times(cls, begin: Time | None, end: Time | None) -> Timespan:
        """Build from astropy Times; ``None`` means unbounded on that side."""
        return cls(
            MIN_NSEC if begin is None else time_to_nsec(begin),
            MAX_NSEC if end is None else time_to_nsec(end),
        )

    @property
    def begin(self) -> Time | None:
        """Beginning as an astropy Time (TAI), or None when unbounded."""
        return None if self.begin_nsec <= MIN_NSEC else nsec_to_time(self.begin_nsec)

    @property
    def end(self) -> Time | None:
        """End as an astropy Time (TAI), or None when unbounded."""
        return None if self.end_nsec >= MAX_NSEC else nsec_to_time(self.end_nsec)

    def overlaps(self, other: Timespan) -> bool:
        """Whether the two half-open intervals share any instant."""
        return self.begin_nsec < other.end_nsec and other.begin_nsec < self.end_nsec

    def contains(self, nsec: int) -> bool:
        """Whether the instant ``nsec`` lies in ``[begin, end)``."""
        return self.begin_nsec <= nsec < self.end_nsec

    def __str__(self) -> str:
        b = "-inf" if self.begin is None else self.begin.isot
        e = "+inf" if self.end is None else self.end.isot
        return f"[{b}, {e})"
