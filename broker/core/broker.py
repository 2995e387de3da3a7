"""The broker state machine: queues, groups and every operation on them.

Pure and synchronous: time comes in as `now` (epoch ms), durability intents go
out through `take_writes()`. The transport calls one method per request, hands
the writes to the store and answers once they are durable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ferry.broker.core.errors import (
    ConflictError,
    GroupNotFoundError,
    MessageNotFoundError,
    QueueFullError,
    QueueNotFoundError,
    UnavailableError,
)
from ferry.broker.core.filters import matches
from ferry.broker.core.groups import Group, GroupFigures
from ferry.broker.core.leasing import Leased, Receipts
from ferry.broker.core.queues import Queue, dedup_hash, rowid, split_rowid
from ferry.broker.core.writes import Kind, Row, Writes
from ferry.broker.models import (
    GroupSettings,
    MessageGroupState,
    Overflow,
    QueueSettings,
    ReceiptStatus,
    StartAt,
)

CONSUMER_FORGET_MS = 3600 * 1000  # idle consumers without leases drop out of stats
BROWSE_SCAN = 10_000  # seqs one browse request looks at, at most (~40 ms with a group filter)
PURGE_STEP = 2_000  # messages one purge step looks at before others get a turn (~50 ms)


@dataclass(slots=True)  # not frozen: one per message, and frozen __init__ is 4x slower
class Incoming:
    priority: int
    delay_ms: int
    key: str | None
    dedup_id: str | None
    payload: Any  # opaque to the core: passed through to the store
    headers: Mapping[str, str] | None = None  # for group filters only: not kept


@dataclass(slots=True, frozen=True)
class DeadEntry:
    seq: int
    delivery_count: int
    dead_at_ms: int
    reason: str


class Broker:
    def __init__(self, now_ms: int) -> None:
        self.receipts = Receipts(now_ms)  # the transport sets .key (unguessable receipts)
        self.queues: dict[str, Queue] = {}
        self.by_qid: dict[int, Queue] = {}
        self.next_qid = 1
        self.next_gid = 1
        self.started_ms = now_ms
        self._writes = Writes()
        # Groups with leases or retries waiting for a time: the only ones `tick` looks at,
        # so idle queues cost nothing between requests (10,000 idle queues used to take
        # ~31% of a core, all of it in tick and compact).
        self.timed: set[Group] = set()

    def take_writes(self) -> Writes:
        w = self._writes
        if w:
            self._writes = Writes()
        return w  # an empty one stays in use: nothing to hand over

    # --- admin -------------------------------------------------------------------

    def queue(self, name: str) -> Queue:
        q = self.queues.get(name)
        if q is None:
            raise QueueNotFoundError(f"queue {name!r} does not exist")
        return q

    def group(self, queue: str, name: str) -> Group:
        g = self.queue(queue).groups.get(name)
        if g is None:
            raise GroupNotFoundError(f"group {name!r} does not exist on queue {queue!r}")
        return g

    def put_queue(self, name: str, settings: QueueSettings, now: int) -> tuple[Queue, bool]:
        q = self.queues.get(name)
        created = q is None
        if q is None:
            q = Queue(self.next_qid, name, settings, now)
            self.next_qid += 1
            self.queues[name] = q
            self.by_qid[q.qid] = q
        q.settings = settings
        self._writes.add(Kind.QUEUE, (q.qid, name, settings.model_dump_json(), q.created_ms))
        self._writes.totals[q.qid] = (q.published_total, q.next_seq)
        return q, created

    def delete_queue(self, name: str) -> None:
        q = self.queue(name)
        del self.queues[name]
        del self.by_qid[q.qid]
        self._writes.add(Kind.QUEUE_DELETED, (q.qid,))

    def put_group(
        self, queue: str, name: str, settings: GroupSettings, now: int
    ) -> tuple[Group, bool]:
        q = self.queue(queue)
        g = q.groups.get(name)
        created = g is None
        if g is None:
            start = q.next_seq if settings.start_at is StartAt.LATEST else 1
            g = Group(self.next_gid, name, q, settings, start, self.receipts)
            self.next_gid += 1
            q.groups[name] = g
            for s in q.moved:
                if s < q.durable_next:
                    g.reprioritize(s, now)
            self._timed(g)
        else:  # start_at only matters at creation; keep the first one
            settings = settings.model_copy(update={"start_at": g.settings.start_at})
        g.settings = settings
        self._writes.add(
            Kind.GROUP,
            (g.gid, q.qid, name, settings.model_dump_json(), g.start_seq)
        )
        return g, created

    def delete_group(self, queue: str, name: str) -> None:
        g = self.group(queue, name)
        del g.queue.groups[name]
        self._writes.add(Kind.GROUP_DELETED, (g.gid,))

    # --- publishing ------------------------------------------------------------------

    def publish(self, queue: str, items: list[Incoming], now: int) -> list[int]:
        """Append messages; returns their ids (a known dedup id gives the original id).

        At `max_depth` the queue's overflow policy applies: reject_publish refuses the
        whole batch before anything changes; drop_oldest stores it and lets the oldest
        stored messages go (for every group, as retention does), counted in dropped_total.
        """
        q = self.queue(queue)
        ids: list[int] = []
        rows: list[Row] = []
        filtered = [g for g in q.groups.values() if g.settings.filter is not None]
        skipped: list[tuple[int, list[Group]]] = []
        qid = q.qid
        cutoff = now - q.settings.dedup_window_ms
        limit = q.settings.max_depth
        if limit is not None and q.settings.overflow is Overflow.REJECT_PUBLISH:
            new = sum(1 for m in items if m.dedup_id is None
                      or q.dedup.get(dedup_hash(m.dedup_id), cutoff) is None)
            if new and q.live + new > limit:
                raise QueueFullError(
                    f"queue {queue} holds {q.live} of at most {limit} messages (maxDepth); "
                    f"{new} more do not fit: retry once consumers have caught up")
        for m in items:
            h = None
            if m.dedup_id is not None:
                h = dedup_hash(m.dedup_id)
                # Indexed under the seq append() gives it next, unless already there.
                seq = q.dedup.claim(h, q.next_seq, now, cutoff)
                if seq is not None:
                    ids.append(rowid(qid, seq))
                    continue
            not_before = now + m.delay_ms
            seq = q.append(m.priority, now, not_before, m.key)
            rid = rowid(qid, seq)
            ids.append(rid)
            rows.append((rid, m.priority, not_before, now, m.key, h, m.payload))
            q.published_total += 1
            if filtered:
                headers = m.headers or {}
                out = [g for g in filtered
                       if g.settings.filter is not None and not matches(g.settings.filter,
                                                                        headers)]
                if out:
                    skipped.append((seq, out))
        self._writes.extend(Kind.MESSAGE, rows)
        if skipped:
            self._filter_out(q, skipped)
        self._writes.totals[qid] = (q.published_total, q.next_seq)
        if limit is not None and q.settings.overflow is Overflow.DROP_OLDEST and q.live > limit:
            dropped = q.drop_oldest(q.live - limit)  # for every group, as retention does
            self._let_go(q, dropped)
            q.dropped_total += len(dropped)
        return ids

    def _filter_out(self, q: Queue, skipped: list[tuple[int, list[Group]]]) -> None:
        """New messages some groups' filters do not match: settled for those groups, and
        gone when no group wants them (written after the messages: the store applies
        writes in order)."""
        w = self._writes
        for seq, groups in skipped:
            for g in groups:
                g.filter_out(seq)
            if len(groups) == len(q.groups):
                if q.mark_gone(seq):
                    w.add(Kind.CONSUMED, (rowid(q.qid, seq),))
            else:
                for g in groups:
                    w.add(Kind.ACK, (g.gid, seq))

    def _let_go(self, q: Queue, seqs: list[int]) -> None:
        """Messages gone before every group finished them (retention, overflow)."""
        for s in seqs:
            for g in q.groups.values():
                g.forget(s)
            self._writes.add(Kind.CONSUMED, (rowid(q.qid, s),))

    def mark_durable(self, qid: int, next_seq: int) -> bool:
        """Everything below next_seq is fsynced: deliverable. True if that moved."""
        q = self.by_qid.get(qid)
        if q is None or next_seq <= q.durable_next:
            return False
        q.durable_next = next_seq
        return True

    # --- consuming ---------------------------------------------------------------------

    def receive(
        self, queue: str, group: str, consumer: str, limit: int, vt_ms: int | None, now: int
    ) -> list[Leased]:
        g = self.group(queue, group)
        g.expire(now, self._writes)
        out = g.take(consumer, limit, vt_ms or g.visibility_timeout_ms, now)
        self._timed(g)
        return out

    def _timed(self, g: Group) -> None:
        if g.leases.heap or g.retries.heap:
            self.timed.add(g)

    def _still(self, queue: str, group: str) -> Group | None:
        """The group, or None if it (or its queue) was deleted meanwhile."""
        q = self.queues.get(queue)
        return q.groups.get(group) if q else None

    def unlease(self, queue: str, group: str, leased: list[Leased], now: int) -> int:
        """Undo leases that were never delivered (see Group.unlease); how many were undone."""
        g = self._still(queue, group)
        return 0 if g is None else sum(g.unlease(m.seq, m.token, now) for m in leased)

    def skip(self, queue: str, group: str, leased: list[Leased], now: int) -> int:
        """Leases of messages the group's filter turned out not to match (found at delivery:
        stored before the filter applied) end as filtered, never delivered; how many did."""
        g = self._still(queue, group)
        return 0 if g is None else sum(g.skip(m.seq, m.token, now, self._writes) for m in leased)

    def _settle(
        self, queue: str, group: str, receipts: list[str], now: int,
        end: Callable[[Group, int], None],
    ) -> list[ReceiptStatus]:
        """End the lease of each current receipt with `end` (ack or give back)."""
        g = self.group(queue, group)
        g.expire(now, self._writes)
        out = []
        for status, seq in (g.resolve(r, now) for r in receipts):
            if status is ReceiptStatus.OK and seq in g.leases.inflight:
                end(g, seq)
            elif status is ReceiptStatus.OK:
                status = ReceiptStatus.STALE  # the same receipt twice in one request
            out.append(status)
        self._timed(g)
        return out

    def ack(self, queue: str, group: str, receipts: list[str], now: int) -> list[ReceiptStatus]:
        return self._settle(queue, group, receipts, now,
                            lambda g, seq: g.ack(seq, now, self._writes))

    def nack(
        self, queue: str, group: str, receipts: list[str], delay_ms: int | None, now: int
    ) -> list[ReceiptStatus]:
        return self._settle(queue, group, receipts, now,
                            lambda g, seq: g.give_back(seq, delay_ms, now, self._writes, "nacked"))

    def extend(
        self, queue: str, group: str, receipts: list[str], vt_ms: int, now: int
    ) -> list[ReceiptStatus]:
        g = self.group(queue, group)
        g.expire(now, self._writes)
        resolved = [g.resolve(r, now) for r in receipts]
        for status, seq in resolved:
            if status is ReceiptStatus.OK:
                g.extend(seq, vt_ms, now)
        self._timed(g)
        return [status for status, _ in resolved]

    # --- time ------------------------------------------------------------------------------

    def tick(self, now: int) -> list[Queue]:
        """Expire leases and retries; returns queues where something became ready.

        Only groups waiting for a time are looked at (`timed`), so the cost follows
        the groups with leases or retries, not how many queues exist.
        """
        woke: dict[int, Queue] = {}
        for g in list(self.timed):
            q = g.queue
            if self.by_qid.get(q.qid) is not q or q.groups.get(g.name) is not g:
                self.timed.discard(g)  # deleted
                continue
            if g.expire(now, self._writes):
                woke[q.qid] = q
            if not g.leases.heap and not g.retries.heap:
                self.timed.discard(g)
        return list(woke.values())

    def compact(self, now: int) -> None:
        """Retention, dedup window, messages every group is done with, idle consumers."""
        w = self._writes
        for q in self.queues.values():
            self._let_go(q, q.expire_before(now - q.settings.retention_ms))
            w.extend(Kind.CONSUMED, [(rowid(q.qid, s),) for s in q.advance_base()])
            purge = q.expire_dedup(now - q.settings.dedup_window_ms)
            if purge > q.purged:
                q.purged = purge
                w.add(Kind.PURGE_BELOW, (q.qid, rowid(q.qid, purge)))
            for g in q.groups.values():
                idle = [
                    name for name, c in g.leases.consumers.items()
                    if c.in_flight <= 0 and now - c.last_seen > CONSUMER_FORGET_MS
                ]
                for name in idle:
                    del g.leases.consumers[name]

    # --- dead letters and inspection ---------------------------------------------------

    def dead_letters(
        self, queue: str, group: str, limit: int, after: int
    ) -> tuple[list[DeadEntry], int | None]:
        g = self.group(queue, group)
        seqs = sorted(s for s in g.dead.letters if s > after)
        page = seqs[:limit]
        entries = [DeadEntry(s, *g.dead.letters[s]) for s in page]
        return entries, (page[-1] if len(seqs) > limit else None)

    def browse(
        self, queue: str, limit: int, after: int, now: int, *, group: str | None = None,
        state: MessageGroupState | None = None, key: str | None = None,
        priority: int | None = None, scan: int = BROWSE_SCAN,
    ) -> tuple[list[int], int | None]:
        """Seqs of the queue's stored, durable messages after `after`, oldest first, that
        match every filter given (a peek: nothing is leased or changed), and the cursor of
        the next page, or None at the end.

        `group` alone keeps the messages the group is not done with; `state` (with a
        group) those in that state for it; `priority` is the one deliveries use now. At
        most `scan` seqs are looked at: a page of a rare match may come back short (even
        empty) with a cursor to go on from, so no request walks a whole queue.
        """
        q = self.queue(queue)
        g = self.group(queue, group) if group is not None else None
        # A key never published matches nothing (-2: no message has it; -1 is "no key").
        kid = None if key is None else q.keys.get(key, -2)
        page: list[int] = []
        start, end = max(q.base, after + 1), q.durable_next
        stop = min(end, start + scan)
        for seq in range(start, stop):
            if not q.exists(seq):
                continue
            if kid is not None and q.key_of(seq) != kid:
                continue
            if priority is not None and q.priority_now(seq) != priority:
                continue
            if g is not None:
                st = g.state_of(seq, now)
                if st is None or (st[0] is not state if state is not None
                                  else st[0] is MessageGroupState.ACKED):
                    continue
            if len(page) == limit:
                return page, page[-1]
            page.append(seq)
        return page, (stop - 1 if stop < end else None)

    def cancel(self, queue: str, seq: int) -> None:
        """The message is gone for every group: an in-flight lease's later ack is stale."""
        q = self.queue(queue)
        mid = rowid(q.qid, seq)
        if q.loading:
            raise UnavailableError(f"queue {queue!r} is still loading after a restart; retry")
        if not q.exists(seq) or seq >= q.durable_next:  # not durable: its publish is unanswered
            raise MessageNotFoundError(f"message {mid} is not in queue {queue!r}")
        for g in q.groups.values():
            g.cancel(seq, self._writes)
        q.cancel(seq)
        self._writes.add(Kind.CONSUMED, (mid,))

    def purge(
        self, queue: str, group: str | None, now: int, step: int = PURGE_STEP
    ) -> Iterator[int]:
        """Messages ready now go: for one group (done for it, as if acked), or for every
        group of the queue (a queue without groups: every stored message that is due).
        In-flight, delayed and dead messages stay, and so do messages published after
        this call.

        A purge is done in steps of at most `step` messages, so a large one does not
        hold up every other request: each next() does one step, leaving its writes to
        take, and yields how many messages went so far (from at least one group); a
        deleted queue or group ends it early. Errors are raised by this call.
        """
        q = self.queue(queue)
        groups = [self.group(queue, group)] if group is not None else list(q.groups.values())
        if q.loading:
            raise UnavailableError(f"queue {queue!r} is still loading after a restart; retry")
        return self._purging(q, groups, now, q.next_seq, step)

    def _purging(
        self, q: Queue, groups: list[Group], now: int, below: int, step: int
    ) -> Iterator[int]:
        purged: set[int] = set()
        if not groups:
            lo = q.base
            while lo < min(below, q.durable_next) and self.by_qid.get(q.qid) is q:
                hi = min(lo + step, below, q.durable_next)
                seqs = [s for s in range(max(lo, q.base), hi) if q.exists(s) and q.due(s, now)]
                for s in seqs:
                    q.cancel(s)
                self._writes.extend(Kind.CONSUMED, [(rowid(q.qid, s),) for s in seqs])
                purged.update(seqs)
                lo = hi
                yield len(purged)
            yield len(purged)
            return
        for g in groups:
            more = True
            while more and self.by_qid.get(q.qid) is q and q.groups.get(g.name) is g:
                seqs, more = g.purge(now, self._writes, below, step)
                purged.update(seqs)
                self._timed(g)
                yield len(purged)
        yield len(purged)

    def redrive(self, queue: str, group: str, seqs: list[int] | None) -> int:
        return self.group(queue, group).redrive(seqs, self._writes)

    def message_states(
        self, queue: str, seq: int, now: int
    ) -> list[tuple[str, MessageGroupState, int]]:
        q = self.queue(queue)
        if not q.exists(seq):
            raise MessageNotFoundError(f"message {rowid(q.qid, seq)} is not in queue {queue!r}")
        return [(name, *st) for name, g in q.groups.items()
                if (st := g.state_of(seq, now)) is not None]

    def set_priority(self, queue: str, seq: int, priority: int, doc: Any, now: int) -> None:
        """Change a stored message's priority for every group still to deliver it.

        `doc` is the message's stored document with the new priority, opaque here.
        In-flight leases keep their delivery; redeliveries use the new priority.
        """
        q = self.queue(queue)
        mid = rowid(q.qid, seq)
        if not q.exists(seq):
            raise MessageNotFoundError(f"message {mid} is not in queue {queue!r}")
        if q.loading or seq >= q.durable_next:
            raise UnavailableError(f"message {mid} is not durable or loaded yet; retry")
        groups = list(q.groups.values())
        for g in groups:
            g.expire(now, self._writes)
        live = [g for g in groups if (st := g.state_of(seq, now)) is not None
                and st[0] is not MessageGroupState.ACKED]
        if groups and not live:
            raise ConflictError(f"message {mid} is done in every group of queue {queue!r}")
        q.moved[seq] = priority
        for g in live:
            g.reprioritize(seq, now)
            self._timed(g)
        self._writes.add(Kind.PRIORITY, (priority, doc, mid))

    def seq_of(self, queue: str, message_id: str) -> int:
        """The queue's seq for a wire id; MessageNotFoundError for ids of other queues."""
        q = self.queue(queue)
        try:
            qid, seq = split_rowid(int(message_id))
        except ValueError:
            qid, seq = -1, 0
        if qid != q.qid:
            raise MessageNotFoundError(f"message {message_id!r} is not in queue {queue!r}")
        return seq

    def figures(self, queue: str, group: str, now: int) -> GroupFigures:
        return self.group(queue, group).figures(now)

    # --- restoring ----------------------------------------------------------------------------

    def restore_queue(
        self, qid: int, name: str, settings: QueueSettings, created_ms: int,
        published_total: int, next_seq: int, first_seq: int | None,
    ) -> Queue:
        """A stored queue, its messages still to come through `Queue.restore_chunk`."""
        q = Queue(qid, name, settings, created_ms)
        q.published_total = published_total
        q.begin_restore(first_seq, next_seq)
        q.dedup_ready = False  # until restore_dedup: publishes with dedup ids must wait
        self.queues[name] = q
        self.by_qid[qid] = q
        self.next_qid = max(self.next_qid, qid + 1)
        return q

    def restore_group(
        self, gid: int, q: Queue, name: str, settings: GroupSettings, start_seq: int,
        acked_total: int,
    ) -> Group:
        g = Group(gid, name, q, settings, start_seq, self.receipts)
        g.acked_total = acked_total
        q.groups[name] = g
        self.next_gid = max(self.next_gid, gid + 1)
        return g
