"""Hypothesis drives the core with random operations and checks its promises.

A model tracks what a consumer can observe: the receipts handed out, which are
still leased, acked or dead. The invariants are the broker's guarantees.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ferry.broker.core import Broker, Incoming, Leased, matches, split_rowid
from ferry.broker.core.errors import QueueFullError
from ferry.broker.models import (
    MAX_DURATION_MS,
    Backoff,
    GroupSettings,
    HeaderFilter,
    MessageGroupState,
    Overflow,
    QueueSettings,
    ReceiptStatus,
)

pytestmark = pytest.mark.unit

T0 = 1_000_000
GROUPS = ("a", "b")
CONSUMERS = ("c1", "c2", "c3")
VT = 1000
MAX_DELIVERIES = 3


class BrokerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.b = Broker(self.now)
        self.b.put_queue(
            "q", QueueSettings(visibility_timeout_ms=VT, max_deliveries=MAX_DELIVERIES), self.now
        )
        for g in GROUPS:
            self.b.put_group("q", g, GroupSettings(nack_backoff=Backoff(initial_ms=10)), self.now)
        self.published: dict[int, Incoming] = {}  # seq -> message
        self.dedup: dict[str, int] = {}
        # per group: seq -> (receipt, deadline) of the current lease
        self.leases: dict[str, dict[int, tuple[str, int]]] = {g: {} for g in GROUPS}
        self.acked: dict[str, set[int]] = {g: set() for g in GROUPS}
        self.receipts: dict[str, list[Leased]] = {g: [] for g in GROUPS}
        self.longest_backoff = 10  # the drain in teardown waits this long per round

    # --- operations ------------------------------------------------------------

    @rule(
        batch=st.lists(
            st.tuples(
                st.integers(0, 9), st.sampled_from([0, 0, 0, 50, 2000]),
                st.sampled_from([None, "k1", "k2"]), st.sampled_from([None, None, "d1", "d2"]),
            ),
            min_size=1, max_size=5,
        )
    )
    def publish(self, batch: list[tuple[int, int, str | None, str | None]]) -> None:
        self.publish_items([Incoming(p, d, k, dd, None) for p, d, k, dd in batch])

    @rule(batch=st.lists(st.sampled_from([None, "order", "refund"]), min_size=1, max_size=5))
    def publish_typed(self, batch: list[str | None]) -> None:
        """Messages with and without the header group b's filter may look at."""
        self.publish_items([Incoming(0, 0, None, None, None, None if t is None else {"type": t})
                            for t in batch])

    @rule(on=st.booleans())
    def filter_b(self, on: bool) -> None:
        """Group b takes only orders from now on (or every message again)."""
        f = HeaderFilter(match={"type": "order"}) if on else None
        settings = self.b.group("q", "b").settings.model_copy(update={"filter": f})
        self.b.put_group("q", "b", settings, self.now)

    @rule(consumer=st.sampled_from(CONSUMERS), n=st.integers(1, 4))
    def receive_filtered(self, consumer: str, n: int) -> None:
        """As the transport delivers to b: leases its filter does not match end skipped."""
        f = self.b.group("q", "b").settings.filter
        got = self.b.receive("q", "b", consumer, n, None, self.now)
        skip = [m for m in got
                if f is not None and not matches(f, self.published[m.seq].headers or {})]
        assert self.b.skip("q", "b", skip, self.now) == len(skip)
        for m in got:
            assert m.seq not in self.acked["b"], "an acked message came back"
            if m in skip:
                self.acked["b"].add(m.seq)  # settled for b, never delivered
            else:
                self.leases["b"][m.seq] = (m.receipt, self.now + VT)
                self.receipts["b"].append(m)

    def publish_items(self, items: list[Incoming]) -> None:
        f = self.b.group("q", "b").settings.filter
        ids = self.b.publish("q", items, self.now)
        q = self.b.queue("q")
        self.b.mark_durable(q.qid, q.next_seq)
        for m, rid in zip(items, ids, strict=True):
            seq = split_rowid(rid)[1]
            if m.dedup_id is not None and m.dedup_id in self.dedup:
                assert seq == self.dedup[m.dedup_id], "dedup id must give the original id"
                continue
            if m.dedup_id is not None:
                self.dedup[m.dedup_id] = seq
            assert seq not in self.published
            self.published[seq] = m
            if f is not None and not matches(f, m.headers or {}):
                self.acked["b"].add(seq)  # filtered out at publish: settled for b

    @rule(group=st.sampled_from(GROUPS), consumer=st.sampled_from(CONSUMERS),
          n=st.integers(1, 4))
    def receive(self, group: str, consumer: str, n: int) -> None:
        got = self.b.receive("q", group, consumer, n, None, self.now)
        assert len(got) <= n
        leases = self.leases[group]
        for m in got:
            assert m.seq in self.published
            assert m.seq not in self.acked[group], "an acked message came back"
            current = leases.get(m.seq)
            assert current is None or current[1] <= self.now, "leased to two consumers at once"
            assert self.b.queue("q").due(m.seq, self.now), "delivered before its delay"
            leases[m.seq] = (m.receipt, self.now + VT)
            self.receipts[group].append(m)
        prios = [self.published[m.seq].priority for m in got]
        assert prios == sorted(prios, reverse=True), "higher priority first"

    @rule(group=st.sampled_from(GROUPS), consumer=st.sampled_from(CONSUMERS),
          n=st.integers(1, 4), keep=st.integers(0, 3))
    def receive_cut(self, group: str, consumer: str, n: int, keep: int) -> None:
        """A response cut at its byte budget: the leases past the cut are undone."""
        before = {m.seq: m.delivery_count for m in self.receipts[group]}
        got = self.b.receive("q", group, consumer, n, None, self.now)
        for m in got[:keep]:
            self.leases[group][m.seq] = (m.receipt, self.now + VT)
            self.receipts[group].append(m)
        assert self.b.unlease("q", group, got[keep:], self.now) == len(got[keep:])
        again = self.b.receive("q", group, consumer, len(got[keep:]) or 1, None, self.now)
        for m, back in zip(got[keep:], again, strict=False):
            # Undone leases come first again, delivered as often as before the cut.
            assert back.delivery_count == m.delivery_count
            assert before.get(back.seq, 0) < back.delivery_count
        assert {m.seq for m in got[keep:]} <= {m.seq for m in again}
        for m in again:
            self.leases[group][m.seq] = (m.receipt, self.now + VT)
            self.receipts[group].append(m)

    def _pick(self, group: str, i: int) -> Leased | None:
        rs = self.receipts[group]
        return rs[i % len(rs)] if rs else None

    @rule(group=st.sampled_from(GROUPS), i=st.integers(0, 100))
    def ack(self, group: str, i: int) -> None:
        m = self._pick(group, i)
        if m is None:
            return
        (status,) = self.b.ack("q", group, [m.receipt], self.now)
        current = self.leases[group].get(m.seq)
        valid = current is not None and current[0] == m.receipt and current[1] > self.now
        assert (status is ReceiptStatus.OK) == valid
        if valid:
            del self.leases[group][m.seq]
            self.acked[group].add(m.seq)

    @rule(group=st.sampled_from(GROUPS), i=st.integers(0, 100),
          delay=st.sampled_from([None, 0, 30]))
    def nack(self, group: str, i: int, delay: int | None) -> None:
        m = self._pick(group, i)
        if m is None:
            return
        (status,) = self.b.nack("q", group, [m.receipt], delay, self.now)
        current = self.leases[group].get(m.seq)
        valid = current is not None and current[0] == m.receipt and current[1] > self.now
        assert (status is ReceiptStatus.OK) == valid
        if valid:
            del self.leases[group][m.seq]

    @rule(group=st.sampled_from(GROUPS))
    def forge(self, group: str) -> None:
        """A receipt made up from another one (its token shifted) never settles a lease."""
        gid = self.b.group("q", group).gid
        leased = [m for m in self.receipts[group][-8:]
                  if self.leases[group].get(m.seq, ("", 0))[0] == m.receipt]
        for mine in leased:
            for theirs in leased:
                if theirs is mine:
                    continue
                forged = [f"{gid}.{theirs.seq}.{mine.token + step}" for step in range(-3, 4)]
                statuses = self.b.extend("q", group, forged, VT, self.now)
                assert ReceiptStatus.OK not in statuses, "a guessed receipt matched a lease"

    @rule(group=st.sampled_from(GROUPS), i=st.integers(0, 100))
    def extend(self, group: str, i: int) -> None:
        m = self._pick(group, i)
        if m is None:
            return
        (status,) = self.b.extend("q", group, [m.receipt], VT, self.now)
        current = self.leases[group].get(m.seq)
        valid = current is not None and current[0] == m.receipt and current[1] > self.now
        assert (status is ReceiptStatus.OK) == valid
        if valid:
            self.leases[group][m.seq] = (m.receipt, self.now + VT)

    @rule(group=st.sampled_from(GROUPS),
          initial=st.sampled_from([0, 1, 10, 1000, MAX_DURATION_MS]),
          multiplier=st.sampled_from([1.0, 2.0, 100.0]),
          most=st.sampled_from([0, 50, 60_000, MAX_DURATION_MS]),
          deliveries=st.integers(1, 1000))
    def set_backoff(
        self, group: str, initial: int, multiplier: float, most: int, deliveries: int
    ) -> None:
        """Any backoff the models allow gives a delay within [0, max_ms], however many nacks."""
        backoff = Backoff(initial_ms=initial, multiplier=multiplier, max_ms=most)
        self.b.put_group("q", group, GroupSettings(nack_backoff=backoff), self.now)
        delay = self.b.group("q", group).backoff_ms(deliveries)
        assert 0 <= delay <= most
        self.longest_backoff = max(self.longest_backoff, most)

    @rule(
        limit=st.integers(1, 6),
        overflow=st.sampled_from(list(Overflow)),
        count=st.integers(1, 4),
        dedup=st.sampled_from([None, "d1", "d3"]),
    )
    def publish_at_max_depth(self, limit: int, overflow: Overflow, count: int,
                             dedup: str | None) -> None:
        """maxDepth: reject_publish refuses a batch that does not fit and changes nothing;
        drop_oldest stores it and lets the oldest stored messages go for every group."""
        bounded = QueueSettings(visibility_timeout_ms=VT, max_deliveries=MAX_DELIVERIES,
                                max_depth=limit, overflow=overflow)
        self.b.put_queue("q", bounded, self.now)
        q = self.b.queue("q")
        known = set(self.published)
        stored = {s for s in known if q.exists(s)}
        before = (q.live, q.published_total, q.next_seq, q.dropped_total)
        items = [Incoming(0, 0, None, dedup if i == 0 else None, None) for i in range(count)]
        try:
            self.publish_items(items)
        except QueueFullError:
            assert overflow is Overflow.REJECT_PUBLISH
            assert (q.live, q.published_total, q.next_seq, q.dropped_total) == before
        else:
            assert q.live <= limit or (overflow is Overflow.REJECT_PUBLISH and q.live <= before[0])
            candidates = stored | (set(self.published) - known)
            dropped = {s for s in candidates if not q.exists(s)}
            assert len(dropped) == q.dropped_total - before[3]
            if overflow is Overflow.REJECT_PUBLISH:
                assert not dropped
            kept = candidates - dropped
            assert all(s < min(kept, default=q.next_seq) for s in dropped), "oldest go first"
            self.forget(dropped)
        finally:
            unbounded = QueueSettings(visibility_timeout_ms=VT, max_deliveries=MAX_DELIVERIES)
            self.b.put_queue("q", unbounded, self.now)

    def forget(self, dropped: set[int]) -> None:
        """Messages let go by drop_oldest are out of every group's flow."""
        for seq in dropped:
            del self.published[seq]
            for g in GROUPS:
                self.leases[g].pop(seq, None)
                self.acked[g].discard(seq)

    @rule(i=st.integers(0, 100))
    def cancel(self, i: int) -> None:
        """A cancelled message is gone for every group; a lease on it no longer acks."""
        q = self.b.queue("q")
        stored = [s for s in sorted(self.published) if q.exists(s)]
        if not stored:
            return
        seq = stored[i % len(stored)]
        leased = [(g, self.leases[g][seq][0]) for g in GROUPS if seq in self.leases[g]]
        self.b.cancel("q", seq)
        assert not q.exists(seq)
        self.forget({seq})
        for g, receipt in leased:
            assert self.b.ack("q", g, [receipt], self.now) == [ReceiptStatus.STALE]

    @rule(group=st.sampled_from([*GROUPS, None]), step=st.integers(1, 3),
          meanwhile=st.lists(st.integers(0, 9), max_size=3))
    def purge(self, group: str | None, step: int, meanwhile: list[int]) -> None:
        """Purge takes exactly the messages ready for the group (each group: None) when it
        began, step by step; messages published between its steps stay."""
        self.b.tick(self.now)  # expired leases are ready, as purge sees them
        groups = GROUPS if group is None else (group,)
        ready = {
            g: {s for s in self.published
                if self._state(g, s) is MessageGroupState.READY}
            for g in groups
        }
        steps = self.b.purge("q", group, self.now, step=step)
        n = next(steps)
        known = set(self.published)
        self.publish_items([Incoming(p, 0, None, None, None) for p in meanwhile])
        n = max([n, *steps])  # the rest of the steps; each yields the count so far
        for s in set(self.published) - known:  # ready, unless b's filter skipped it
            assert all(self._state(g, s) is MessageGroupState.READY or s in self.acked[g]
                       for g in GROUPS)
        assert n == len(set().union(*ready.values()))
        for g, seqs in ready.items():
            for s in seqs:
                assert self._state(g, s) in (MessageGroupState.ACKED, None)
                self.acked[g].add(s)
                self.leases[g].pop(s, None)  # an expired lease: its receipt is stale now

    def _state(self, group: str, seq: int) -> MessageGroupState | None:
        if not self.b.queue("q").exists(seq):
            return None
        st_ = self.b.group("q", group).state_of(seq, self.now)
        return None if st_ is None else st_[0]

    @rule(group=st.sampled_from([*GROUPS, None]),
          state=st.sampled_from([None, *MessageGroupState]),
          key=st.sampled_from([None, "k1", "k3"]), priority=st.sampled_from([None, 0, 9]),
          limit=st.integers(1, 3), scan=st.integers(1, 5))
    def browse(self, group: str | None, state: MessageGroupState | None, key: str | None,
               priority: int | None, limit: int, scan: int) -> None:
        """Paging through a filtered browse finds each matching message once, in order,
        however small the pages and the scan bound; it changes nothing."""
        if group is None:
            state = None
        q = self.b.queue("q")
        want = [
            s for s in sorted(self.published)
            if q.exists(s) and (key is None or self.published[s].key == key)
            and (priority is None or q.priority_now(s) == priority)
            and (group is None or self._state(group, s) not in (None, MessageGroupState.ACKED)
                 if state is None else self._state(group, s) is state)
        ]
        before = [self.b.figures("q", g, self.now) for g in GROUPS]
        got: list[int] = []
        after = 0
        for _ in range(10_000):
            page, nxt = self.b.browse("q", limit, after, self.now, group=group, state=state,
                                      key=key, priority=priority, scan=scan)
            assert len(page) <= limit
            got += page
            if nxt is None:
                break
            assert nxt >= after
            after = nxt
        assert got == want
        assert [self.b.figures("q", g, self.now) for g in GROUPS] == before

    @rule(ms=st.sampled_from([1, 10, 100, 999, 1000, 2500]))
    def advance(self, ms: int) -> None:
        self.now += ms
        self.b.tick(self.now)

    @rule()
    def compact(self) -> None:
        self.b.compact(self.now)

    @precondition(lambda self: any(self.b.group("q", g).dead.letters for g in GROUPS))
    @rule(group=st.sampled_from(GROUPS))
    def redrive(self, group: str) -> None:
        self.b.redrive("q", group, None)

    # --- invariants ---------------------------------------------------------------

    @invariant()
    def groups_keep_their_written_invariants(self) -> None:
        # The invariants the group and its parts write down in their docstrings.
        for g in GROUPS:
            assert self.b.group("q", g).violations() == []

    @invariant()
    def lag_counts_what_is_not_finished(self) -> None:
        for g in GROUPS:
            f = self.b.figures("q", g, self.now)
            dead = set(self.b.group("q", g).dead.letters)
            unfinished = set(self.published) - self.acked[g] - dead
            assert f.depth + f.in_flight + f.delayed == len(unfinished)
            assert f.dead == len(dead)
            assert f.in_flight <= len(unfinished)

    def teardown(self) -> None:
        """Drain: everything published ends up acked or dead-lettered in every group."""
        for _ in range(MAX_DELIVERIES * 20 + 20):
            self.now += 10 * VT + self.longest_backoff
            self.b.tick(self.now)
            for g in GROUPS:
                for m in self.b.receive("q", g, "drain", 1000, None, self.now):
                    assert m.seq not in self.acked[g]
                    assert self.b.ack("q", g, [m.receipt], self.now) == [ReceiptStatus.OK]
                    self.acked[g].add(m.seq)
        for g in GROUPS:
            dead = set(self.b.group("q", g).dead.letters)
            assert self.acked[g] | dead == set(self.published)
            assert not self.acked[g] & dead
        self.b.compact(self.now)
        everyone_done = all(
            set(self.published) <= self.acked[g] for g in GROUPS
        )
        if everyone_done:
            assert self.b.queue("q").live == 0


TestBrokerCore = BrokerMachine.TestCase
TestBrokerCore.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
