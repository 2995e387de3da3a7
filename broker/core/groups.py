"""A consumer group: a cursor over its queue plus small structures for what is out.

Messages the cursor has not passed are pending for the group; once passed, a
message is either done (acked) or *held*: in flight (`Leases`), ready again
(`redo`), waiting for a retry time (`RetrySchedule`) or dead (`DeadLetters`).
Only held messages cost memory, so an acked backlog of any size costs nothing
here. Fair mode buffers upcoming messages by key (`FairBuckets`); what the store
said about messages ahead of the cursor is in `Restoring`.

Invariants across the parts (`Group.violations`): leased, waiting and dead seqs
are held, and no seq is more than one of them; a held seq is still stored (a
cancel drops it from every group); each part states its own.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from dataclasses import dataclass

from ferry.broker.core.dead_letters import DeadLetters
from ferry.broker.core.fair import FAIR_LOOKAHEAD, FairBuckets
from ferry.broker.core.leasing import Leased, Leases, Receipts
from ferry.broker.core.queues import PRIORITIES, Queue, rowid
from ferry.broker.core.restoring import Restoring
from ferry.broker.core.retries import RetrySchedule
from ferry.broker.core.writes import Kind, Writes
from ferry.broker.models import GroupSettings, MessageGroupState, ReceiptStatus


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
        receipts: Receipts,
    ) -> None:
        self.gid = gid
        self.name = name
        self.queue = queue
        self.settings = settings
        self.start_seq = start_seq
        self.cursor = [queue.ready_index(p, start_seq) for p in range(PRIORITIES)]
        self.held: dict[int, int] = {}  # passed the cursor, not done: seq -> deliveries so far
        self.leases = Leases()
        self.retries = RetrySchedule()
        self.redo: list[list[int]] = [[] for _ in range(PRIORITIES)]  # ready again, by seq
        self.dead = DeadLetters()
        self.restoring = Restoring()
        self.fair = FairBuckets()
        self.acked_total = 0
        self.purged_total = 0  # purged for this group (since start)
        self.filtered_total = 0  # skipped by the group's filter (since start)
        # Receipts carry a token that never repeats, not even across restarts.
        self.receipts = receipts

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
        r = self.restoring
        if seq in r.acked_skip or seq in r.held_skip:  # held ahead of the cursor, settled
            return True
        return self.passed(seq)

    def settled_below(self, old: int, base: int) -> None:
        """The queue's base moved from old to base: forget settled seqs ahead of the cursor
        below it (acks restored or filtered out), at the cost of what moved."""
        r = self.restoring
        if not r.acked_skip:
            return
        if base - old > len(r.acked_skip):
            r.acked_skip = {s for s in r.acked_skip if s >= base}
        else:
            for s in range(old, base):
                r.acked_skip.discard(s)

    def trimmed(self, base: int) -> None:
        q = self.queue
        for p in range(PRIORITIES):
            self.cursor[p] = max(self.cursor[p], q.ready_off[p])
        r = self.restoring
        if r.acked_skip:
            r.acked_skip = {s for s in r.acked_skip if s >= base}

    # --- taking messages ----------------------------------------------------------

    def _pull(self, p: int, now: int) -> int | None:
        """Advance the cursor to the next deliverable seq of priority p (now held)."""
        q = self.queue
        arr, off, limit = q.ready[p], q.ready_off[p], q.durable_next
        i, n = self.cursor[p] - off, len(arr)
        r = self.restoring
        acked_skip, held_skip, prior = r.acked_skip, r.held_skip, r.prior
        found = None
        while i < n:
            s = arr[i]
            if s >= limit:
                break
            i += 1
            if s < self.start_seq:  # a restart reads back messages older than the group
                continue
            if acked_skip and s in acked_skip:
                acked_skip.discard(s)
                continue
            if held_skip and s in held_skip:
                held_skip.discard(s)
                continue
            if q.is_gone(s):
                continue
            count, visible = prior.pop(s, (0, 0)) if prior else (0, 0)
            nb = q.not_before.get(s)
            if nb is not None and nb > visible:
                visible = nb
            self.held[s] = count
            if visible > now:
                self.retries.add(s, visible)
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
            if s in self.held and s not in self.leases.inflight and s not in self.retries.waiting \
                    and s not in self.dead.letters and not self._stale(s, p):
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
        q, fair = self.queue, self.fair
        while fair.buffered[p] < FAIR_LOOKAHEAD:
            s = self._pop_redo(p)
            if s is None:
                s = self._pull(p, now)
                if s is None:
                    break
            fair.add(p, s, q.key_of(s))
        inflight, dead = self.leases.inflight, self.dead.letters
        while (s := fair.pop(p)) is not None:
            if s in self.held and s not in inflight and s not in dead and not self._stale(s, p):
                return s
        return None

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
            if s not in self.leases.inflight and s not in self.retries.waiting \
                    and s not in self.dead.letters:
                self._make_ready(s)
            return True
        r = self.restoring
        if s in r.acked_skip or s in r.held_skip or self.passed(s):
            return False
        count, visible = r.prior.pop(s, (0, 0)) if r.prior else (0, 0)
        nb = self.queue.not_before.get(s)
        if nb is not None and nb > visible:
            visible = nb
        self.held[s] = count
        r.held_skip.add(s)
        if visible > now:
            self.retries.add(s, visible)
        else:
            self._make_ready(s)
        return True

    def take(self, consumer: str, limit: int, vt_ms: int, now: int) -> list[Leased]:
        self.leases.seen(consumer, now)
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
        self.leases.start(s, consumer, token, now + vt_ms)
        return Leased(s, count, self.receipt(s, token), token)

    def receipt(self, seq: int, token: int) -> str:
        """The receipt of a lease, as `resolve` reads it back."""
        return f"{self.gid}.{seq}.{token}"

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
        lease = self.leases.inflight.get(seq)
        if lease is None or lease.token != token or lease.deadline <= now:
            return ReceiptStatus.STALE, seq
        return ReceiptStatus.OK, seq

    def ack(self, s: int, now: int, w: Writes) -> None:
        self.leases.end(s, now)
        self.acked_total += 1
        w.group_totals[self.gid] = self.acked_total
        self._done_with(s, w)

    def _done_with(self, s: int, w: Writes) -> None:
        """The group is finished with held s (acked or purged): the message is gone once
        every group is."""
        del self.held[s]
        persisted = self.restoring.persisted
        if s in persisted:
            persisted.discard(s)
            w.add(Kind.COUNT_DELETED, (self.gid, s))
        q = self.queue
        # The only group has just finished with s: skip asking every group.
        if len(q.groups) == 1 or q.done_for_all(s):
            if q.mark_gone(s):
                w.add(Kind.CONSUMED, (rowid(q.qid, s),))
        else:
            w.add(Kind.ACK, (self.gid, s))

    def filter_out(self, s: int) -> None:
        """New s does not match the group's filter: settled for the group at once, as a
        restored ack ahead of the cursor is (never ready, in flight or lag here). The
        broker writes it (an ack row, or the message gone when no group wants it).

        Until s is durable, depth undercounts by s (figures subtract every settled seq
        ahead of the cursor): milliseconds, and never below zero.
        """
        self.filtered_total += 1
        self.restoring.acked_skip.add(s)

    def skip(self, s: int, token: int, now: int, w: Writes) -> bool:
        """End lease `token` of s, found not to match the filter at delivery: done for the
        group without a delivery (the count goes back), as filter_out. False if that lease
        has ended meanwhile."""
        lease = self.leases.inflight.get(s)
        if lease is None or lease.token != token:
            return False
        self.leases.end(s, now)
        self.filtered_total += 1
        self._done_with(s, w)
        return True

    def give_back(self, s: int, delay_ms: int | None, now: int, w: Writes, why: str) -> None:
        """End a lease without ack: retry later, now, or dead-letter at max deliveries."""
        self.leases.end(s, now)
        count = self.held[s]
        if count >= self.max_deliveries:
            self._kill(s, count, now, f"{why} after {count} deliveries", w)
            return
        delay = self.backoff_ms(count) if delay_ms is None else delay_ms
        visible = now + delay
        if delay > 0:
            self.retries.add(s, visible)
        else:
            self._make_ready(s)
        self.restoring.persisted.add(s)
        w.add(Kind.COUNT, (self.gid, s, count, visible))

    def unlease(self, s: int, token: int, now: int) -> bool:
        """Take back a lease never handed to its consumer, as if it had not been made.

        The message is ready again at once with its delivery count as before (a
        response cut at its byte budget); nothing was persisted by the lease, so
        nothing is written. False if that lease has ended meanwhile.
        """
        lease = self.leases.inflight.get(s)
        if lease is None or lease.token != token:
            return False
        self.leases.end(s, now)
        self.held[s] -= 1
        self._make_ready(s)
        return True

    def extend(self, s: int, vt_ms: int, now: int) -> None:
        self.leases.extend(s, now + vt_ms, now)

    def _kill(self, s: int, count: int, now: int, reason: str, w: Writes) -> None:
        self.dead.add(s, count, now, reason)
        w.add(Kind.DEAD, (self.gid, s, count, now, reason))

    def expire(self, now: int, w: Writes) -> bool:
        """Leases past their deadline and retries past their time; True if any became ready."""
        woke = False
        while (s := self.leases.pop_expired(now)) is not None:
            self.give_back(s, 0, now, w, "lease expired")
            woke = True
        while (s := self.retries.pop_due(now)) is not None:
            if s in self.held:
                self._make_ready(s)
                woke = True
        return woke

    def redrive(self, seqs: list[int] | None, w: Writes) -> int:
        chosen = self.dead.take(seqs)
        persisted = self.restoring.persisted
        for s in chosen:
            self.held[s] = 0
            w.add(Kind.DEAD_DELETED, (self.gid, s))
            if s in persisted:
                persisted.discard(s)
                w.add(Kind.COUNT_DELETED, (self.gid, s))
            self._make_ready(s)
        return len(chosen)

    def purge(self, now: int, w: Writes, below: int, budget: int) -> tuple[list[int], bool]:
        """Messages ready for the group now and published before seq `below` become done
        for it, as if leased and acked at once (acked_total stays: nothing was consumed);
        in flight, delayed and dead ones stay. At most `budget` messages are purged:
        returns the purged seqs and whether the budget ran out (call again for the rest).

        Ready messages come out the way `take` finds them. Later ones (>= below) are set
        aside and made ready again at the end; a pass repeats while it purged some, since
        it can make ready a message of a priority it has passed (a priority changed before
        the cursor reached it).
        """
        self.expire(now, w)
        out: list[int] = []
        later: list[int] = []
        fair = self.queue.settings.fair
        nxt = self._next_fair if fair else self._next_plain
        found = True
        while found and len(out) < budget:
            found = False
            for p in range(PRIORITIES - 1, -1, -1):
                while len(out) < budget and (s := nxt(p, now)) is not None:
                    if s >= below:
                        later.append(s)
                        if fair:  # fair order is by key: older ones may still come
                            continue
                        break  # plain order is by seq within a priority: the rest is later
                    self._done_with(s, w)
                    out.append(s)
                    found = True
        for s in later:
            self._make_ready(s)
        self.purged_total += len(out)
        return out, len(out) >= budget

    def cancel(self, s: int, w: Writes) -> None:
        """s is cancelled for every group: drop it here, and the rows kept for it."""
        if s in self.dead.letters:
            w.add(Kind.DEAD_DELETED, (self.gid, s))
        if s in self.restoring.persisted:
            w.add(Kind.COUNT_DELETED, (self.gid, s))
        self.forget(s)

    def forget(self, s: int) -> None:
        """The message is gone (retention): drop every trace of it."""
        self.leases.drop(s)
        self.held.pop(s, None)
        self.dead.letters.pop(s, None)
        self.retries.waiting.discard(s)
        self.restoring.forget(s)

    # Rows of messages that turn out to be gone are dropped once loading is done.

    def restore_ack(self, s: int) -> None:
        self.restoring.acked_skip.add(s)

    def restore_count(self, s: int, count: int, visible: int) -> None:
        self.restoring.prior[s] = (count, visible)
        self.restoring.persisted.add(s)

    def drop_gone(self) -> None:
        """Loading is done: skip what predates the group, forget rows of gone messages."""
        q = self.queue
        for p in range(PRIORITIES):
            self.cursor[p] = max(self.cursor[p], q.ready_index(p, self.start_seq))
        r = self.restoring
        r.acked_skip = {s for s in r.acked_skip if q.exists(s)}
        for s in [s for s in r.prior if not q.exists(s)]:
            del r.prior[s]
            r.persisted.discard(s)
        for s in self.dead.take([s for s in self.dead.letters if not q.exists(s)]):
            self.held.pop(s, None)
            r.held_skip.discard(s)

    def restore_dead(self, s: int, count: int, at: int, reason: str) -> None:
        self.dead.add(s, count, at, reason)
        self.held[s] = count
        self.restoring.held_skip.add(s)

    # --- figures ---------------------------------------------------------------------

    def state_of(self, s: int, now: int) -> tuple[MessageGroupState, int] | None:
        if s < self.start_seq:
            return None
        if s in self.dead.letters:
            return MessageGroupState.DEAD, self.dead.letters[s][0]
        if s in self.leases.inflight:
            return MessageGroupState.IN_FLIGHT, self.held[s]
        if s in self.retries.waiting:
            return MessageGroupState.DELAYED, self.held[s]
        if s in self.held:
            return MessageGroupState.READY, self.held[s]
        r = self.restoring
        if s in r.acked_skip or s in r.held_skip or self.passed(s):
            return MessageGroupState.ACKED, 0
        count, visible = r.prior.get(s, (0, 0))
        if not self.queue.due(s, now) or visible > now:
            return MessageGroupState.DELAYED, count
        return MessageGroupState.READY, count

    def figures(self, now: int) -> GroupFigures:
        q = self.queue
        cancelled = q.cancelled  # gone, still in the ready lists: not ready
        fresh = 0
        oldest: int | None = None
        for p in range(PRIORITIES):
            arr, off = q.ready[p], q.ready_off[p]
            i = max(self.cursor[p] - off, bisect_left(arr, max(q.base, self.start_seq)))
            j = bisect_left(arr, q.durable_next)
            if j > i:
                fresh += j - i
                k = i
                while k < j and arr[k] in cancelled:
                    k += 1
                if k < j:
                    oldest = arr[k] if oldest is None else min(oldest, arr[k])
        r = self.restoring
        fresh -= len(r.acked_skip) + len(r.held_skip)
        fresh -= sum(1 for s in cancelled if self.start_seq <= s < q.durable_next
                     and not self.passed(s))
        waiting = sum(1 for s, nb in q.not_before.items()
                      if nb > now and s >= self.start_seq and s not in self.held
                      and s not in r.held_skip and s not in r.acked_skip and not self.passed(s))
        # restored retries the cursor has not reached
        waiting += sum(1 for s, (_, visible) in r.prior.items() if visible > now and q.due(s, now))
        inflight, waits, dead = self.leases.inflight, self.retries.waiting, self.dead.letters
        ready_held = 0
        for s in self.held:
            if s in inflight or s in waits or s in dead:
                continue
            ready_held += 1
            oldest = s if oldest is None else min(oldest, s)
        depth = max(0, fresh - waiting) + ready_held
        age = 0
        if depth and oldest is not None and q.exists(oldest):
            age = max(0, now - q.published_of(oldest))
        return GroupFigures(
            depth=depth, in_flight=len(inflight), delayed=len(waits) + waiting,
            dead=len(dead), oldest_ready_age_ms=age,
        )

    # --- invariants -----------------------------------------------------------------

    def violations(self) -> list[str]:
        """The written invariants (module, parts) that do not hold now; [] when sound.

        For tests (the Hypothesis state machine checks it after every step): it
        walks every structure, so never call it on a hot path.
        """
        held, r = self.held, self.restoring
        leased, waits, dead = set(self.leases.inflight), self.retries.waiting, self.dead.letters
        out = self.leases.violations() + self.retries.violations() + self.fair.violations()
        for name, seqs in (("leased", leased), ("waiting", waits), ("dead", set(dead))):
            out += [f"{name} {s} is not held" for s in sorted(seqs - held.keys())]
        out += [f"{s} is leased and waiting" for s in sorted(leased & waits)]
        out += [f"{s} is leased and dead" for s in sorted(leased & dead.keys())]
        out += [f"{s} is waiting and dead" for s in sorted(waits & dead.keys())]
        out += [f"dead {s} holds {held.get(s)} deliveries, not {c}"
                for s, (c, _, _) in dead.items() if held.get(s) != c]
        out += [f"acked {s} is held" for s in sorted(r.acked_skip & held.keys())]
        if not self.queue.loading:  # until loaded, seqs not read back yet count as gone
            out += [f"held {s} is gone (cancelled, purged or expired)"
                    for s in sorted(held) if self.queue.is_gone(s)]
        counted = held.keys() | r.prior.keys()
        out += [f"count row of {s} without a count" for s in sorted(r.persisted - counted)]
        return out

