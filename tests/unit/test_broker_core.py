"""Rules of the broker core, one behaviour per test (pure: time is passed in)."""

from __future__ import annotations

import pytest

from ferry.broker.core import Broker, Incoming, Kind, QueueNotFoundError, split_rowid
from ferry.broker.models import (
    Backoff,
    GroupSettings,
    MessageGroupState,
    QueueSettings,
    ReceiptStatus,
    StartAt,
)

pytestmark = pytest.mark.unit

T0 = 1_000_000


def msg(
    priority: int = 0, delay_ms: int = 0, key: str | None = None, dedup: str | None = None
) -> Incoming:
    return Incoming(priority, delay_ms, key, dedup, None)


def make(
    groups: tuple[str, ...] = ("g",), **settings: object
) -> Broker:
    b = Broker(T0)
    b.put_queue("q", QueueSettings.model_validate(settings), T0)
    for g in groups:
        b.put_group("q", g, GroupSettings(), T0)
    return b


def publish(b: Broker, *items: Incoming, now: int = T0) -> list[int]:
    """Publish and make durable at once, as the transport does after fsync."""
    ids = b.publish("q", list(items), now)
    q = b.queue("q")
    b.mark_durable(q.qid, q.next_seq)
    return [split_rowid(i)[1] for i in ids]


def seqs(leased: list) -> list[int]:  # type: ignore[type-arg]
    return [m.seq for m in leased]


def test_every_group_sees_every_message() -> None:
    b = make(("a", "b"))
    published = publish(b, msg(), msg(), msg())
    assert seqs(b.receive("q", "a", "c", 10, None, T0)) == published
    assert seqs(b.receive("q", "b", "c", 10, None, T0)) == published


def test_consumers_of_a_group_compete() -> None:
    b = make()
    publish(b, msg(), msg(), msg(), msg())
    first = seqs(b.receive("q", "g", "c1", 2, None, T0))
    second = seqs(b.receive("q", "g", "c2", 10, None, T0))
    assert len(first) == 2 and len(second) == 2
    assert not set(first) & set(second)


def test_nothing_is_delivered_before_it_is_durable() -> None:
    b = make()
    b.publish("q", [msg()], T0)
    assert b.receive("q", "g", "c", 10, None, T0) == []
    q = b.queue("q")
    b.mark_durable(q.qid, q.next_seq)
    assert len(b.receive("q", "g", "c", 10, None, T0)) == 1


def test_priority_first_then_arrival() -> None:
    b = make()
    low1, high1, mid, high2, low2 = publish(
        b, msg(priority=0), msg(priority=9), msg(priority=5), msg(priority=9), msg(priority=0)
    )
    got = seqs(b.receive("q", "g", "c", 10, None, T0))
    assert got == [high1, high2, mid, low1, low2]


def test_delayed_message_waits_for_its_time() -> None:
    b = make()
    (late,) = publish(b, msg(delay_ms=5000))
    (now,) = publish(b, msg())
    assert seqs(b.receive("q", "g", "c", 10, None, T0)) == [now]
    assert b.figures("q", "g", T0).delayed == 1
    assert b.receive("q", "g", "c", 10, None, T0 + 4999) == []
    assert seqs(b.receive("q", "g", "c", 10, None, T0 + 5000)) == [late]


def test_expired_lease_goes_to_another_consumer_and_old_receipt_is_stale() -> None:
    b = make(visibility_timeout_ms=1000)
    publish(b, msg())
    (first,) = b.receive("q", "g", "c1", 1, None, T0)
    assert b.receive("q", "g", "c2", 1, None, T0 + 999) == []
    (second,) = b.receive("q", "g", "c2", 1, None, T0 + 1000)
    assert second.seq == first.seq
    assert second.delivery_count == 2
    assert b.ack("q", "g", [first.receipt], T0 + 1001) == [ReceiptStatus.STALE]
    assert b.ack("q", "g", [second.receipt], T0 + 1001) == [ReceiptStatus.OK]
    assert b.figures("q", "g", T0 + 1001).in_flight == 0


def test_receipts_of_other_groups_are_unknown() -> None:
    b = make(("a", "b"))
    publish(b, msg())
    (m,) = b.receive("q", "a", "c", 1, None, T0)
    assert b.ack("q", "b", [m.receipt, "garbage"], T0) == [ReceiptStatus.UNKNOWN] * 2
    assert b.ack("q", "a", [m.receipt, m.receipt], T0) == [ReceiptStatus.OK, ReceiptStatus.STALE]


def test_receipt_tokens_never_repeat_and_follow_the_key() -> None:
    from ferry.broker.core.leasing import Receipts

    r = Receipts(T0, b"k" * 16)
    tokens = [r.mint() for _ in range(10_000)]
    assert len(set(tokens)) == len(tokens)
    assert all(0 <= t < 2**63 for t in tokens)  # an int64 everywhere
    # Tokens are hashed 8 at a time: a key set in the middle of a block applies from the
    # very next token on, as it did when each token was hashed alone.
    changed, fresh = Receipts(T0, b"a" * 16), Receipts(T0, b"b" * 16)
    changed.mint(), fresh.mint()
    changed.key = b"b" * 16
    assert [changed.mint() for _ in range(20)] == [fresh.mint() for _ in range(20)]
    assert Receipts(T0, b"a" * 16).mint() != Receipts(T0, b"b" * 16).mint()


def test_extend_keeps_the_lease() -> None:
    b = make(visibility_timeout_ms=1000)
    publish(b, msg())
    (m,) = b.receive("q", "g", "c1", 1, None, T0)
    assert b.extend("q", "g", [m.receipt], 5000, T0 + 900) == [ReceiptStatus.OK]
    assert b.receive("q", "g", "c2", 1, None, T0 + 3000) == []
    assert b.ack("q", "g", [m.receipt], T0 + 3000) == [ReceiptStatus.OK]


def test_nack_with_delay_and_with_exponential_backoff() -> None:
    b = Broker(T0)
    b.put_queue("q", QueueSettings(max_deliveries=10), T0)
    b.put_group("q", "g", GroupSettings(nack_backoff=Backoff(initial_ms=100, multiplier=3)), T0)
    publish(b, msg())
    (m,) = b.receive("q", "g", "c", 1, None, T0)
    assert b.nack("q", "g", [m.receipt], 0, T0) == [ReceiptStatus.OK]
    (m,) = b.receive("q", "g", "c", 1, None, T0)  # delay 0: right back
    assert m.delivery_count == 2
    b.nack("q", "g", [m.receipt], None, T0)  # backoff: 100 * 3 ** (2 - 1) = 300 ms
    assert b.receive("q", "g", "c", 1, None, T0 + 299) == []
    (m,) = b.receive("q", "g", "c", 1, None, T0 + 300)
    assert m.delivery_count == 3
    b.nack("q", "g", [m.receipt], 50, T0 + 300)
    assert b.receive("q", "g", "c", 1, None, T0 + 349) == []
    assert len(b.receive("q", "g", "c", 1, None, T0 + 350)) == 1


def test_max_deliveries_dead_letters_then_redrive() -> None:
    b = make(max_deliveries=2)
    (s,) = publish(b, msg())
    for _ in range(2):
        (m,) = b.receive("q", "g", "c", 1, None, T0)
        b.nack("q", "g", [m.receipt], 0, T0)
    assert b.receive("q", "g", "c", 1, None, T0) == []
    dead, nxt = b.dead_letters("q", "g", 10, 0)
    assert [(d.seq, d.delivery_count) for d in dead] == [(s, 2)] and nxt is None
    assert b.figures("q", "g", T0).dead == 1
    assert b.message_states("q", s, T0) == [("g", MessageGroupState.DEAD, 2)]
    assert b.redrive("q", "g", None) == 1
    (m,) = b.receive("q", "g", "c", 1, None, T0)
    assert (m.seq, m.delivery_count) == (s, 1)


def test_expiry_also_counts_towards_max_deliveries() -> None:
    b = make(max_deliveries=1, visibility_timeout_ms=10)
    publish(b, msg())
    b.receive("q", "g", "c", 1, None, T0)
    b.tick(T0 + 10)
    assert b.figures("q", "g", T0 + 10).dead == 1


def test_dead_letter_pages() -> None:
    b = make(max_deliveries=1)
    publish(b, *[msg() for _ in range(5)])
    for m in b.receive("q", "g", "c", 5, None, T0):
        b.nack("q", "g", [m.receipt], 0, T0)
    page1, cur = b.dead_letters("q", "g", 2, 0)
    assert cur is not None
    page2, cur2 = b.dead_letters("q", "g", 2, cur)
    page3, cur3 = b.dead_letters("q", "g", 2, cur2 or 0)
    got = [d.seq for d in page1 + page2 + page3]
    assert got == sorted(got) and len(set(got)) == 5 and cur3 is None
    assert b.redrive("q", "g", got[:2]) == 2
    assert b.figures("q", "g", T0).dead == 3


def test_dedup_returns_the_original_id_within_the_window() -> None:
    b = make(dedup_window_ms=1000)
    first = b.publish("q", [msg(dedup="x"), msg(dedup="x")], T0)
    assert first[0] == first[1]
    assert b.publish("q", [msg(dedup="x")], T0 + 500) == [first[0]]
    assert b.queue("q").published_total == 1
    b.compact(T0 + 1001)
    again = b.publish("q", [msg(dedup="x")], T0 + 1001)
    assert again != [first[0]]


def test_fair_mode_round_robins_across_keys() -> None:
    b = make(fair=True)
    noisy = publish(b, *[msg(key="noisy") for _ in range(6)])
    quiet = publish(b, msg(key="quiet"), msg(key="quiet"))
    got = seqs(b.receive("q", "g", "c", 8, None, T0))
    assert got[:4] == [noisy[0], quiet[0], noisy[1], quiet[1]]
    assert got[4:] == noisy[2:]


def test_plain_mode_is_arrival_order_regardless_of_key() -> None:
    b = make()
    noisy = publish(b, *[msg(key="noisy") for _ in range(3)])
    quiet = publish(b, msg(key="quiet"))
    assert seqs(b.receive("q", "g", "c", 8, None, T0)) == noisy + quiet


def test_start_latest_skips_earlier_messages() -> None:
    b = make(())
    publish(b, msg(), msg())
    b.put_group("q", "late", GroupSettings(start_at=StartAt.LATEST), T0)
    b.put_group("q", "all", GroupSettings(), T0)
    (new,) = publish(b, msg())
    assert seqs(b.receive("q", "late", "c", 10, None, T0)) == [new]
    assert len(b.receive("q", "all", "c", 10, None, T0)) == 3


def test_message_is_deleted_once_every_group_acked() -> None:
    b = make(("a", "b"))
    (s,) = publish(b, msg())
    b.take_writes()
    (ma,) = b.receive("q", "a", "c", 1, None, T0)
    b.ack("q", "a", [ma.receipt], T0)
    w = b.take_writes()
    assert w.rows(Kind.ACK) == [(b.group("q", "a").gid, s)] and w.rows(Kind.CONSUMED) == []
    assert b.queue("q").live == 1
    (mb,) = b.receive("q", "b", "c", 1, None, T0)
    b.ack("q", "b", [mb.receipt], T0)
    w = b.take_writes()
    assert len(w.rows(Kind.CONSUMED)) == 1 and b.queue("q").live == 0


def test_retention_drops_old_messages_for_every_group() -> None:
    b = make(retention_ms=1000)
    publish(b, msg())
    (m,) = b.receive("q", "g", "c", 1, None, T0)
    (young,) = publish(b, msg(), now=T0 + 900)
    b.compact(T0 + 1000)
    assert b.queue("q").live == 1
    assert b.ack("q", "g", [m.receipt], T0 + 1000) == [ReceiptStatus.STALE]
    assert seqs(b.receive("q", "g", "c", 10, None, T0 + 1000)) == [young]


def test_stats_count_each_state() -> None:
    b = make(max_deliveries=1)
    publish(b, msg(), msg(), msg(), msg(delay_ms=60_000))
    ms = b.receive("q", "g", "c", 2, None, T0)
    b.nack("q", "g", [ms[0].receipt], 0, T0)  # max 1: dead
    f = b.figures("q", "g", T0 + 250)
    assert (f.depth, f.in_flight, f.delayed, f.dead) == (1, 1, 1, 1)
    assert f.oldest_ready_age_ms == 250
    c = b.group("q", "g").leases.consumers["c"]
    assert c.in_flight == 1 and c.last_seen == T0


def test_unknown_queue_is_an_error() -> None:
    b = Broker(T0)
    with pytest.raises(QueueNotFoundError):
        b.publish("nope", [msg()], T0)


def test_deleted_acked_messages_do_not_come_back_after_compaction() -> None:
    b = make()
    publish(b, *[msg() for _ in range(10)])
    for m in b.receive("q", "g", "c", 10, None, T0):
        b.ack("q", "g", [m.receipt], T0)
    b.compact(T0)
    assert b.queue("q").base == b.queue("q").next_seq
    assert b.receive("q", "g", "c", 10, None, T0) == []
    assert b.figures("q", "g", T0).depth == 0


def test_the_clock_looks_only_at_groups_waiting_for_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 21: 10,000 idle queues cost a share of a core, every tick visiting each."""
    from ferry.broker.core import groups

    b = make()
    for i in range(1000):
        b.put_queue(f"idle-{i}", QueueSettings(), T0)
        b.put_group(f"idle-{i}", "g", GroupSettings(), T0)
    publish(b, msg(), msg(delay_ms=50))
    visited: list[str] = []
    real = groups.Group.expire

    def counting(self: groups.Group, now: int, w: object) -> bool:
        visited.append(self.queue.name)
        return real(self, now, w)  # type: ignore[arg-type]

    monkeypatch.setattr(groups.Group, "expire", counting)
    assert b.tick(T0 + 1) == [] and visited == []  # nothing leased, nothing waits
    (m,) = b.receive("q", "g", "c", 10, 100, T0 + 1)  # a lease, and a delayed message pulled
    visited.clear()
    assert b.tick(T0 + 60) == [b.queue("q")]  # the delayed one is due
    assert visited == ["q"]
    assert b.ack("q", "g", [m.receipt], T0 + 61) == [ReceiptStatus.OK]
    (d,) = b.receive("q", "g", "c", 10, 100, T0 + 61)
    b.ack("q", "g", [d.receipt], T0 + 62)
    b.tick(T0 + 10_000)  # past the acked leases' deadlines: their heap entries go
    visited.clear()
    b.tick(T0 + 10_001)
    assert visited == []  # nothing waits for a time: no group is looked at any more
