"""A consumer group: a cursor over its queue plus small structures for what is out.

Messages the cursor has not passed are pending for the group; once passed, a
message is either done (acked) or *held*: in flight, ready again, waiting for
a retry time or dead. Only held messages cost memory, so an acked backlog of
any size costs nothing here.
"""

from __future__ import annotations

import hashlib
import heapq
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass

from ferry.broker.core.queues import PRIORITIES, Queue, rowid
from ferry.broker.core.writes import Kind, Writes
from ferry.broker.models import GroupSettings, MessageGroupState, ReceiptStatus

FAIR_LOOKAHEAD = 1024  # fair mode sorts this many upcoming messages per priority by key


class Receipts:
    """Mints lease tokens that a client cannot guess from the ones it was given.

    A receipt is `gid.seq.token`; with sequential tokens, a consumer holding one
    could ack another consumer's lease. Each token is a keyed hash of a counter
    that never repeats (not even across restarts: it starts at the start time
    << 20). The key is the transport's (random per process: Runtime); shared by
    a broker's groups, so setting it once covers groups restored before.
    """

    __slots__ = ("_next", "key")

    def __init__(self, now_ms: int, key: bytes = b"") -> None:
        self.key = key
        self._next = now_ms << 20

    def mint(self) -> int:
        n = self._next
        self._next = n + 1
        digest = hashlib.blake2b(n.to_bytes(8, "little"), key=self.key, digest_size=8).digest()
        return int.from_bytes(digest, "little") >> 1  # 63 bits: an int64 everywhere


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


@dataclass(slots=True, frozen=True)
class GroupFigures:
    depth: int
    in_flight: int
    delayed: int
    dead: int
    oldest_ready_age_ms: int


class Group:
    def __init__(
        self, gid: int, name: str, queue: Queue, settings: GroupSettings, start_seq: int,
        now_ms: int, receipts: Receipts | None = None,
    ) -> None:
        self.gid = gid
        self.name = name
        self.queue = queue
        self.settings = settings
        self.start_seq = start_seq
        self.cursor = [queue.ready_index(p, start_seq) for p in range(PRIORITIES)]
        self.held: dict[int, int] = {}  # passed the cursor, not done: seq -> deliveries so far
        self.inflight: dict[int, Lease] = {}
        self.lease_heap: list[tuple[int, int, int]] = []  # deadline, seq, token
        self.retry_heap: list[tuple[int, int]] = []  # visible_at, seq
        self.retrying: set[int] = set()
        self.redo: list[list[int]] = [[] for _ in range(PRIORITIES)]  # ready again, by seq
        self.dead: dict[int, tuple[int, int, str]] = {}  # seq -> deliveries, dead_at, reason
        self.acked_skip: set[int] = set()  # restored acks the cursor has not reached yet
        self.held_skip: set[int] = set()  # restored dead letters the cursor has not reached
        self.prior: dict[int, tuple[int, int]] = {}  # restored: seq -> deliveries, visible_at
        self.persisted: set[int] = set()  # seqs with a delivery-count row in the store
        self.consumers: dict[str, Consumer] = {}
        self.acked_total = 0
        # Receipts carry a token that never repeats, not even across restarts.
        self.receipts = receipts if receipts is not None else Receipts(now_ms)
        self.buckets: list[dict[int, list[int]]] = [{} for _ in range(PRIORITIES)]
        self.rr: list[deque[int]] = [deque() for _ in range(PRIORITIES)]
        self.buffered = [0] * PRIORITIES

    # --- effective settings ---------------------------------------------------

    @property
    def visibility_timeout_ms(self) -> int:
        return self.settings.visibility_timeout_ms or self.queue.settings.visibility_timeout_ms

    @property
    def max_deliveries(self) -> int:
        return self.settings.max_deliveries or self.queue.settings.max_deliveries

    def backoff_ms(self, deliveries: int) -> int:
        b = self.settings.nack_backoff
        try:
            grown = b.initial_ms * b.multiplier ** max(0, deliveries - 1)
        except OverflowError:  # multiplier**n beyond a double (100**155): capped anyway
            return b.max_ms if b.initial_ms else 0
        return int(min(b.max_ms, grown))  # an infinite product is capped too

    # --- what the group is done with -------------------------------------------

    def passed(self, seq: int) -> bool:
        q = self.queue
        p = q.priority_of(seq)
        arr = q.ready[p]
        i = self.cursor[p] - q.ready_off[p]
        return i >= len(arr) or arr[i] > seq

    def done(self, seq: int) -> bool:
        if seq < self.start_seq:
            return True
        if seq in self.held:
            return False
        if seq in self.acked_skip or seq in self.held_skip:  # held ahead of the cursor, settled
            return True
        return self.passed(seq)

    def trimmed(self, base: int) -> None:
        q = self.queue
        for p in range(PRIORITIES):
            self.cursor[p] = max(self.cursor[p], q.ready_off[p])
        if self.acked_skip:
            self.acked_skip = {s for s in self.acked_skip if s >= base}

    # --- taking messages ----------------------------------------------------------

    def _pull(self, p: int, now: int) -> int | None:
        """Advance the cursor to the next deliverable seq of priority p (now held)."""
        q = self.queue
        arr, off, limit = q.ready[p], q.ready_off[p], q.durable_next
        i, n = self.cursor[p] - off, len(arr)
        found = None
        while i < n:
            s = arr[i]
            if s >= limit:
                break
            i += 1
            if s < self.start_seq:  # a restart reads back messages older than the group
                continue
            if self.acked_skip and s in self.acked_skip:
                self.acked_skip.discard(s)
                continue
            if self.held_skip and s in self.held_skip:
                self.held_skip.discard(s)
                continue
            if q.is_gone(s):
                continue
            count, visible = self.prior.pop(s, (0, 0)) if self.prior else (0, 0)
            nb = q.not_before.get(s)
            if nb is not None and nb > visible:
                visible = nb
            self.held[s] = count
            if visible > now:
                heapq.heappush(self.retry_heap, (visible, s))
                self.retrying.add(s)
                continue
            if q.moved and q.moved.get(s, p) != p:  # changed before this group was made
                self._make_ready(s)
                continue
            found = s
            break
        self.cursor[p] = i + off
        return found

    def _peek_raw(self, p: int) -> int | None:
        q = self.queue
        i = self.cursor[p] - q.ready_off[p]
        arr = q.ready[p]
        if i < len(arr) and arr[i] < q.durable_next:
            return arr[i]
        return None

    def _stale(self, s: int, p: int) -> bool:
        """An entry of priority p for s left behind by a priority change."""
        moved = self.queue.moved
        return bool(moved) and moved.get(s, p) != p

    def _pop_redo(self, p: int) -> int | None:
        heap = self.redo[p]
        while heap:
            s = heapq.heappop(heap)
            if s in self.held and s not in self.inflight and s not in self.retrying \
                    and s not in self.dead and not self._stale(s, p):
                return s
        return None

    def _next_plain(self, p: int, now: int) -> int | None:
        heap = self.redo[p]
        if heap:
            raw = self._peek_raw(p)
            if raw is None or heap[0] < raw:
                s = self._pop_redo(p)
                if s is not None:
                    return s
        s = self._pull(p, now)
        if s is not None and heap and heap[0] < s:
            heapq.heappush(heap, s)
            return self._pop_redo(p)
        return s if s is not None else self._pop_redo(p)

    def _next_fair(self, p: int, now: int) -> int | None:
        q = self.queue
        buckets, rr = self.buckets[p], self.rr[p]
        while self.buffered[p] < FAIR_LOOKAHEAD:
            s = self._pop_redo(p)
            if s is None:
                s = self._pull(p, now)
                if s is None:
                    break
            self._bucket(p, s, q.key_of(s))
        while rr:
            kid = rr.popleft()
            heap = buckets[kid]
            s = heapq.heappop(heap)
            self.buffered[p] -= 1
            if heap:
                rr.append(kid)
            else:
                del buckets[kid]
            if s in self.held and s not in self.inflight and s not in self.dead \
                    and not self._stale(s, p):
                return s
        return None

    def _bucket(self, p: int, s: int, kid: int) -> None:
        heap = self.buckets[p].get(kid)
        if heap is None:
            heap = self.buckets[p][kid] = []
            self.rr[p].append(kid)
        heapq.heappush(heap, s)
        self.buffered[p] += 1

    def _make_ready(self, s: int) -> None:
        heapq.heappush(self.redo[self.queue.priority_now(s)], s)

    def reprioritize(self, s: int, now: int) -> bool:
        """s has a new priority (`Queue.moved`): deliver it by that from now on.

        A ready message moves to the new priority's redo heap (the old entry goes
        stale); one the cursor has not reached is held now and skipped by the
        cursor later. Leases, retries and dead letters pick the new priority up
        when they become ready again. False if the group is done with s.
        """
        if s < self.start_seq:
            return False
        if s in self.held:
            if s not in self.inflight and s not in self.retrying and s not in self.dead:
                self._make_ready(s)
            return True
        if s in self.acked_skip or s in self.held_skip or self.passed(s):
            return False
        count, visible = self.prior.pop(s, (0, 0)) if self.prior else (0, 0)
        nb = self.queue.not_before.get(s)
        if nb is not None and nb > visible:
            visible = nb
        self.held[s] = count
        self.held_skip.add(s)
        if visible > now:
            heapq.heappush(self.retry_heap, (visible, s))
            self.retrying.add(s)
        else:
            self._make_ready(s)
        return True

    def take(self, consumer: str, limit: int, vt_ms: int, now: int) -> list[Leased]:
        self.seen(consumer, now)
        out: list[Leased] = []
        fair = self.queue.settings.fair
        for p in range(PRIORITIES - 1, -1, -1):
            while len(out) < limit:
                s = self._next_fair(p, now) if fair else self._next_plain(p, now)
                if s is None:
                    break
                out.append(self._lease(s, consumer, vt_ms, now))
            if len(out) >= limit:
                break
        return out

    def _lease(self, s: int, consumer: str, vt_ms: int, now: int) -> Leased:
        count = self.held[s] + 1
        self.held[s] = count
        token = self.receipts.mint()
        deadline = now + vt_ms
        self.inflight[s] = Lease(consumer, token, deadline)
        heapq.heappush(self.lease_heap, (deadline, s, token))
        self.consumers[consumer].in_flight += 1
        return Leased(s, count, self.receipt(s, token), token)

    def receipt(self, seq: int, token: int) -> str:
        """The receipt of a lease, as `resolve` reads it back."""
        return f"{self.gid}.{seq}.{token}"

    def seen(self, consumer: str, now: int) -> Consumer:
        c = self.consumers.get(consumer)
        if c is None:
            c = self.consumers[consumer] = Consumer(now)
        else:
            c.last_seen = now
        return c

    # --- settling ------------------------------------------------------------------

    def resolve(self, receipt: str, now: int) -> tuple[ReceiptStatus, int]:
        """The seq a receipt leases, if it is this group's and still current."""
        parts = receipt.split(".")
        if len(parts) != 3:
            return ReceiptStatus.UNKNOWN, 0
        try:
            gid, seq, token = int(parts[0]), int(parts[1]), int(parts[2])
        except ValueError:
            return ReceiptStatus.UNKNOWN, 0
        if gid != self.gid:
            return ReceiptStatus.UNKNOWN, 0
        lease = self.inflight.get(seq)
        if lease is None or lease.token != token or lease.deadline <= now:
            return ReceiptStatus.STALE, seq
        return ReceiptStatus.OK, seq

    def _end_lease(self, s: int, now: int) -> Lease:
        lease = self.inflight.pop(s)
        c = self.consumers.get(lease.consumer)
        if c is not None:
            c.in_flight -= 1
            c.last_seen = max(c.last_seen, now)
        return lease

    def ack(self, s: int, now: int, w: Writes) -> None:
        self._end_lease(s, now)
        del self.held[s]
        self.acked_total += 1
        w.group_totals[self.gid] = self.acked_total
        if s in self.persisted:
            self.persisted.discard(s)
            w.add(Kind.COUNT_DELETED, (self.gid, s))
        q = self.queue
        # The only group has just finished with s: skip asking every group.
        if len(q.groups) == 1 or q.done_for_all(s):
            if q.mark_gone(s):
                w.add(Kind.CONSUMED, (rowid(q.qid, s),))
        else:
            w.add(Kind.ACK, (self.gid, s))

    def give_back(self, s: int, delay_ms: int | None, now: int, w: Writes, why: str) -> None:
        """End a lease without ack: retry later, now, or dead-letter at max deliveries."""
        self._end_lease(s, now)
        count = self.held[s]
        if count >= self.max_deliveries:
            self._kill(s, count, now, f"{why} after {count} deliveries", w)
            return
        delay = self.backoff_ms(count) if delay_ms is None else delay_ms
        visible = now + delay
        if delay > 0:
            heapq.heappush(self.retry_heap, (visible, s))
            self.retrying.add(s)
        else:
            self._make_ready(s)
        self.persisted.add(s)
        w.add(Kind.COUNT, (self.gid, s, count, visible))

    def unlease(self, s: int, token: int, now: int) -> bool:
        """Take back a lease never handed to its consumer, as if it had not been made.

        The message is ready again at once with its delivery count as before (a
        response cut at its byte budget); nothing was persisted by the lease, so
        nothing is written. False if that lease has ended meanwhile.
        """
        lease = self.inflight.get(s)
        if lease is None or lease.token != token:
            return False
        self._end_lease(s, now)
        self.held[s] -= 1
        self._make_ready(s)
        return True

    def extend(self, s: int, vt_ms: int, now: int) -> None:
        lease = self.inflight[s]
        lease.deadline = now + vt_ms
        heapq.heappush(self.lease_heap, (lease.deadline, s, lease.token))
        c = self.consumers.get(lease.consumer)
        if c is not None:
            c.last_seen = max(c.last_seen, now)

    def _kill(self, s: int, count: int, now: int, reason: str, w: Writes) -> None:
        self.dead[s] = (count, now, reason)
        w.add(Kind.DEAD, (self.gid, s, count, now, reason))

    def expire(self, now: int, w: Writes) -> bool:
        """Leases past their deadline and retries past their time; True if any became ready."""
        woke = False
        heap = self.lease_heap
        while heap and heap[0][0] <= now:
            deadline, s, token = heapq.heappop(heap)
            lease = self.inflight.get(s)
            if lease is None or lease.token != token or lease.deadline != deadline:
                continue
            self.give_back(s, 0, now, w, "lease expired")
            woke = True
        retry = self.retry_heap
        while retry and retry[0][0] <= now:
            _, s = heapq.heappop(retry)
            if s in self.retrying:
                self.retrying.discard(s)
                if s in self.held:
                    self._make_ready(s)
                    woke = True
        return woke

    def redrive(self, seqs: list[int] | None, w: Writes) -> int:
        chosen = list(self.dead) if seqs is None else [s for s in seqs if s in self.dead]
        for s in chosen:
            del self.dead[s]
            self.held[s] = 0
            w.add(Kind.DEAD_DELETED, (self.gid, s))
            if s in self.persisted:
                self.persisted.discard(s)
                w.add(Kind.COUNT_DELETED, (self.gid, s))
            self._make_ready(s)
        return len(chosen)

    def forget(self, s: int) -> None:
        """The message is gone (retention): drop every trace of it."""
        if s in self.inflight:
            lease = self.inflight.pop(s)
            c = self.consumers.get(lease.consumer)
            if c is not None:
                c.in_flight -= 1
        self.held.pop(s, None)
        self.dead.pop(s, None)
        self.retrying.discard(s)
        self.acked_skip.discard(s)
        self.held_skip.discard(s)
        self.prior.pop(s, None)
        self.persisted.discard(s)

    # --- restoring from the store --------------------------------------------------

    # Rows of messages that turn out to be gone are dropped once loading is done.

    def restore_ack(self, s: int) -> None:
        self.acked_skip.add(s)

    def restore_count(self, s: int, count: int, visible: int) -> None:
        self.prior[s] = (count, visible)
        self.persisted.add(s)

    def drop_gone(self) -> None:
        """Loading is done: skip what predates the group, forget rows of gone messages."""
        q = self.queue
        for p in range(PRIORITIES):
            self.cursor[p] = max(self.cursor[p], q.ready_index(p, self.start_seq))
        self.acked_skip = {s for s in self.acked_skip if q.exists(s)}
        for s in [s for s in self.prior if not q.exists(s)]:
            del self.prior[s]
            self.persisted.discard(s)
        for s in [s for s in self.dead if not q.exists(s)]:
            del self.dead[s]
            self.held.pop(s, None)
            self.held_skip.discard(s)

    def restore_dead(self, s: int, count: int, at: int, reason: str) -> None:
        self.dead[s] = (count, at, reason)
        self.held[s] = count
        self.held_skip.add(s)

    # --- figures ---------------------------------------------------------------------

    def state_of(self, s: int, now: int) -> tuple[MessageGroupState, int] | None:
        if s < self.start_seq:
            return None
        if s in self.dead:
            return MessageGroupState.DEAD, self.dead[s][0]
        if s in self.inflight:
            return MessageGroupState.IN_FLIGHT, self.held[s]
        if s in self.retrying:
            return MessageGroupState.DELAYED, self.held[s]
        if s in self.held:
            return MessageGroupState.READY, self.held[s]
        if s in self.acked_skip or s in self.held_skip or self.passed(s):
            return MessageGroupState.ACKED, 0
        count, visible = self.prior.get(s, (0, 0))
        if not self.queue.due(s, now) or visible > now:
            return MessageGroupState.DELAYED, count
        return MessageGroupState.READY, count

    def figures(self, now: int) -> GroupFigures:
        q = self.queue
        fresh = 0
        oldest: int | None = None
        for p in range(PRIORITIES):
            arr, off = q.ready[p], q.ready_off[p]
            i = max(self.cursor[p] - off, bisect_left(arr, max(q.base, self.start_seq)))
            j = bisect_left(arr, q.durable_next)
            if j > i:
                fresh += j - i
                oldest = arr[i] if oldest is None else min(oldest, arr[i])
        fresh -= len(self.acked_skip) + len(self.held_skip)
        waiting = 0
        for s, nb in q.not_before.items():
            if nb > now and s >= self.start_seq and s not in self.held \
                    and s not in self.held_skip and not self.passed(s):
                waiting += 1
        for s, (_, visible) in self.prior.items():  # restored retries the cursor has not reached
            if visible > now and q.due(s, now):
                waiting += 1
        ready_held = 0
        for s in self.held:
            if s in self.inflight or s in self.retrying or s in self.dead:
                continue
            ready_held += 1
            oldest = s if oldest is None else min(oldest, s)
        depth = max(0, fresh - waiting) + ready_held
        age = 0
        if depth and oldest is not None and q.exists(oldest):
            age = max(0, now - q.published_of(oldest))
        return GroupFigures(
            depth=depth, in_flight=len(self.inflight), delayed=len(self.retrying) + waiting,
            dead=len(self.dead), oldest_ready_age_ms=age,
        )

