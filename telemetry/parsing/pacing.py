"""Rate limiting math for the streamer (time is passed in, so it is unit-testable)."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Aim for about this many publishes per second when rate-limited: smooth, not bursty.
TARGET_BATCHES_PER_SECOND = 10


@dataclass(frozen=True)
class Pace:
    """`rate` rows per second overall, or None for as fast as the broker takes them."""

    rate: float | None
    # Unpaced, a publish of 8,000 rows gives each GPU's message ~100 of its rows when a
    # streamer has 80 GPUs (the CSV holds one row per metric per GPU per scrape): the
    # broker's and the collectors' costs are largely per message (bench/README.md).
    batch_size: int = 8000

    def __post_init__(self) -> None:
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError("rate must be a positive number of rows per second")
        if self.batch_size < 1:
            raise ValueError("batch size must be >= 1")

    def batch(self) -> int:
        """Rows per publish: small enough that a low rate is smooth, never above batch_size."""
        if self.rate is None:
            return self.batch_size
        return max(1, min(self.batch_size, math.floor(self.rate / TARGET_BATCHES_PER_SECOND)))

    def delay(self, sent: int, elapsed: float) -> float:
        """Seconds to wait before sending more, having sent `sent` rows in `elapsed` seconds."""
        if self.rate is None:
            return 0.0
        return max(0.0, sent / self.rate - elapsed)
