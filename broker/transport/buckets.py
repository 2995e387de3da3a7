"""A token bucket per broker token (rate=N/s): pure, the time is passed in (seconds)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Bucket:
    """`rate` requests per second, with bursts of up to `rate` (one second's worth).

    Starts full, so a client's first second is never refused.
    """

    rate: float
    level: float
    at: float  # when `level` was last brought up to date

    @classmethod
    def full(cls, rate: float, now: float) -> Bucket:
        return cls(rate, rate, now)

    def take(self, now: float) -> float:
        """Take one request: 0.0 when taken, else the seconds until one is there (untaken)."""
        if now > self.at:  # a clock that went back refills nothing
            self.level = min(self.rate, self.level + (now - self.at) * self.rate)
            self.at = now
        if self.level >= 1.0:
            self.level -= 1.0
            return 0.0
        return (1.0 - self.level) / self.rate
