"""A group's leases: who holds which message until when, and the receipts naming them."""

from __future__ import annotations

import hashlib
import heapq
import struct
from dataclasses import dataclass


class Receipts:
    """Mints lease tokens that a client cannot guess from the ones it was given.

    A receipt is `gid.seq.token`; with sequential tokens, a consumer holding one
    could ack another consumer's lease. Each token is 63 bits of a keyed hash of a
    counter that never repeats (not even across restarts: it starts at the start
    time << 20). One 64-byte hash of counter // 8 gives the tokens of 8 counters (a
    hash per token cost ~1 µs of every delivery: bench/README.md). The key is the
    transport's (random per process: Runtime); shared by a broker's groups, so
    setting it once covers groups restored before.
    """

    __slots__ = ("_block", "_key", "_next", "_tokens")

    def __init__(self, now_ms: int, key: bytes = b"") -> None:
        self._key = key
        self._next = now_ms << 20
        self._block = -1  # counter // 8 that _tokens were hashed from
        self._tokens: tuple[int, ...] = ()

    @property
    def key(self) -> bytes:
        return self._key

    @key.setter
    def key(self, key: bytes) -> None:
        self._key = key
        self._block = -1  # tokens hashed with the old key are not handed out

    def mint(self) -> int:
        n = self._next
        self._next = n + 1
        block = n >> 3
        if block != self._block:
            digest = hashlib.blake2b(block.to_bytes(8, "little"), key=self._key).digest()
            self._tokens = tuple(t >> 1 for t in _TOKENS.unpack(digest))  # 63 bits: int64
            self._block = block
        return self._tokens[n & 7]


_TOKENS = struct.Struct("<8Q")


@dataclass(slots=True)
class Lease:
    consumer: str
    token: int
    deadline: int


@dataclass(slots=True)
class Consumer:
    last_seen: int
    in_flight: int = 0


@dataclass(slots=True)  # not frozen: one per message, and frozen __init__ is 4x slower
class Leased:
    seq: int
    delivery_count: int
    receipt: str
    token: int


class Leases:
    """The messages of one group in flight, and the consumers holding them.

    Invariants (`violations` lists any that do not hold):
    - every lease in `inflight` has an entry `(deadline, seq, token)` equal to its
      own in `heap`; entries of extended or ended leases stay there until popped
      and are skipped then (deleting from the middle of a heap costs O(n));
    - a consumer's `in_flight` is the number of leases it holds;
    - a lease's consumer is in `consumers`.
    """

    __slots__ = ("consumers", "heap", "inflight")

    def __init__(self) -> None:
        self.inflight: dict[int, Lease] = {}
        self.heap: list[tuple[int, int, int]] = []  # deadline, seq, token
        self.consumers: dict[str, Consumer] = {}

    def seen(self, consumer: str, now: int) -> Consumer:
        c = self.consumers.get(consumer)
        if c is None:
            c = self.consumers[consumer] = Consumer(now)
        else:
            c.last_seen = now
        return c

    def start(self, s: int, consumer: str, token: int, deadline: int) -> None:
        """Lease s to a consumer already `seen`."""
        self.inflight[s] = Lease(consumer, token, deadline)
        heapq.heappush(self.heap, (deadline, s, token))
        self.consumers[consumer].in_flight += 1

    def end(self, s: int, now: int) -> Lease:
        """The consumer settled s (or its lease ran out): it was last seen now."""
        lease = self.inflight.pop(s)
        c = self.consumers.get(lease.consumer)
        if c is not None:
            c.in_flight -= 1
            c.last_seen = max(c.last_seen, now)
        return lease

    def drop(self, s: int) -> None:
        """s is gone: end its lease, if any, without anyone having settled it."""
        lease = self.inflight.pop(s, None)
        if lease is not None:
            c = self.consumers.get(lease.consumer)
            if c is not None:
                c.in_flight -= 1

    def extend(self, s: int, deadline: int, now: int) -> None:
        lease = self.inflight[s]
        lease.deadline = deadline
        heapq.heappush(self.heap, (deadline, s, lease.token))
        c = self.consumers.get(lease.consumer)
        if c is not None:
            c.last_seen = max(c.last_seen, now)

    def pop_expired(self, now: int) -> int | None:
        """The next seq whose lease is past its deadline at `now` (still leased), if any."""
        heap = self.heap
        while heap and heap[0][0] <= now:
            deadline, s, token = heapq.heappop(heap)
            lease = self.inflight.get(s)
            if lease is not None and lease.token == token and lease.deadline == deadline:
                return s
        return None

    def violations(self) -> list[str]:
        out: list[str] = []
        entries = set(self.heap)
        counts: dict[str, int] = {}
        for s, lease in self.inflight.items():
            if (lease.deadline, s, lease.token) not in entries:
                out.append(f"lease of {s} has no deadline entry")
            if lease.consumer not in self.consumers:
                out.append(f"lease of {s} names unknown consumer {lease.consumer}")
            counts[lease.consumer] = counts.get(lease.consumer, 0) + 1
        for name, c in self.consumers.items():
            held = counts.get(name, 0)
            if c.in_flight != held:
                out.append(f"consumer {name} counts {c.in_flight} leases, holds {held}")
        return out
