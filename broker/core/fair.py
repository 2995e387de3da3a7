"""Fair mode's lookahead: upcoming messages bucketed by key, served round-robin."""

from __future__ import annotations

import heapq
from collections import deque

from ferry.broker.core.queues import PRIORITIES

FAIR_LOOKAHEAD = 1024  # fair mode sorts this many upcoming messages per priority by key


class FairBuckets:
    """Per priority: key id -> heap of seqs, a round-robin of key ids, and a count.

    Invariants per priority p (`violations` lists any that do not hold):
    - `rr[p]` names each bucket of `buckets[p]` exactly once and nothing else;
    - no bucket is empty;
    - `buffered[p]` is the number of seqs in the buckets of p.
    A buffered seq may have been settled or moved since: the group checks when it
    pops one.
    """

    __slots__ = ("buckets", "buffered", "rr")

    def __init__(self) -> None:
        self.buckets: list[dict[int, list[int]]] = [{} for _ in range(PRIORITIES)]
        self.rr: list[deque[int]] = [deque() for _ in range(PRIORITIES)]
        self.buffered = [0] * PRIORITIES

    def add(self, p: int, s: int, kid: int) -> None:
        heap = self.buckets[p].get(kid)
        if heap is None:
            heap = self.buckets[p][kid] = []
            self.rr[p].append(kid)
        heapq.heappush(heap, s)
        self.buffered[p] += 1

    def pop(self, p: int) -> int | None:
        """The lowest seq of the next key in turn, if any is buffered."""
        rr = self.rr[p]
        if not rr:
            return None
        kid = rr.popleft()
        buckets = self.buckets[p]
        heap = buckets[kid]
        s = heapq.heappop(heap)
        self.buffered[p] -= 1
        if heap:
            rr.append(kid)
        else:
            del buckets[kid]
        return s

    def violations(self) -> list[str]:
        out: list[str] = []
        for p in range(PRIORITIES):
            buckets, rr = self.buckets[p], self.rr[p]
            if sorted(rr) != sorted(buckets):
                out.append(f"priority {p}: round-robin {list(rr)} != buckets {sorted(buckets)}")
            if any(not heap for heap in buckets.values()):
                out.append(f"priority {p}: an empty bucket")
            n = sum(len(heap) for heap in buckets.values())
            if self.buffered[p] != n:
                out.append(f"priority {p}: buffered {self.buffered[p]} != {n} in buckets")
        return out
