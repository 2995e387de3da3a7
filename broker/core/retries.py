"""A group's retry schedule: held messages waiting for a time before they are ready."""

from __future__ import annotations

import heapq


class RetrySchedule:
    """Seqs waiting for a nack backoff, a delayed publish's time or a restored retry time.

    Invariants (`violations` lists any that do not hold):
    - every seq in `waiting` has an entry `(visible_at, seq)` in `heap`; entries of
      seqs no longer waiting (forgotten) stay until popped and are skipped then.
    """

    __slots__ = ("heap", "waiting")

    def __init__(self) -> None:
        self.heap: list[tuple[int, int]] = []  # visible_at, seq
        self.waiting: set[int] = set()

    def add(self, s: int, visible: int) -> None:
        heapq.heappush(self.heap, (visible, s))
        self.waiting.add(s)

    def pop_due(self, now: int) -> int | None:
        """The next seq whose time has come at `now` (no longer waiting), if any."""
        heap = self.heap
        while heap and heap[0][0] <= now:
            _, s = heapq.heappop(heap)
            if s in self.waiting:
                self.waiting.discard(s)
                return s
        return None

    def violations(self) -> list[str]:
        scheduled = {s for _, s in self.heap}
        return [f"{s} waits without a time" for s in sorted(self.waiting - scheduled)]
