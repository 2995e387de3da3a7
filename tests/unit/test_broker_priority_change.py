"""Changing a stored message's priority in the core (pure: time is passed in)."""

from __future__ import annotations

import pytest

from ferry.broker.core import Broker, Incoming, Kind, split_rowid
from ferry.broker.core.errors import ConflictError, MessageNotFoundError, UnavailableError
from ferry.broker.models import GroupSettings, MessageGroupState, QueueSettings, StartAt

pytestmark = pytest.mark.unit

T0 = 1_000_000


def make(*groups: str, fair: bool = False) -> Broker:
    b = Broker(T0)
    b.put_queue("q", QueueSettings(fair=fair), T0)
    for g in groups:
        b.put_group("q", g, GroupSettings(), T0)
    return b


def publish(b: Broker, *priorities: int, durable: bool = True) -> list[int]:
    items = [Incoming(p, 0, f"k{i}", None, None) for i, p in enumerate(priorities)]
    ids = b.publish("q", items, T0)
    if durable:
        q = b.queue("q")
        b.mark_durable(q.qid, q.next_seq)
    return [split_rowid(i)[1] for i in ids]


def order(b: Broker, group: str = "g", now: int = T0) -> list[int]:
    return [m.seq for m in b.receive("q", group, "c", 100, None, now)]


@pytest.mark.parametrize("fair", [False, True])
def test_raised_message_comes_before_older_higher_ones(fair: bool) -> None:
    b = make("g", fair=fair)
    a, c, low = publish(b, 5, 5, 1)
    b.set_priority("q", low, 9, None, T0)
    assert order(b) == [low, a, c]


@pytest.mark.parametrize("fair", [False, True])
def test_lowered_message_comes_after_the_others(fair: bool) -> None:
    b = make("g", fair=fair)
    top, x, y = publish(b, 9, 3, 3)
    b.set_priority("q", top, 0, None, T0)
    assert order(b) == [x, y, top]


def test_a_message_ready_again_moves_too_and_is_delivered_once() -> None:
    b = make("g")
    first, second = publish(b, 1, 5)
    leased = b.receive("q", "g", "c", 2, None, T0)
    assert [m.seq for m in leased] == [second, first]
    b.nack("q", "g", [m.receipt for m in leased], 0, T0)  # both ready again
    b.set_priority("q", first, 9, None, T0)
    assert order(b) == [first, second]
    assert order(b) == []  # the entry left at priority 1 is not a second delivery


def test_an_in_flight_lease_keeps_its_delivery_and_redelivery_uses_the_new_priority() -> None:
    b = make("g")
    (m,) = publish(b, 0)
    (lease,) = b.receive("q", "g", "c", 1, None, T0)
    (other,) = publish(b, 5)
    b.set_priority("q", m, 9, None, T0)
    assert b.message_states("q", m, T0) == [("g", MessageGroupState.IN_FLIGHT, 1)]
    b.nack("q", "g", [lease.receipt], 0, T0)
    assert order(b) == [m, other]


def test_only_groups_still_to_deliver_it_change() -> None:
    b = make("a", "b")
    x, y = publish(b, 5, 1)
    (lease, _) = b.receive("q", "a", "c", 2, None, T0)
    b.ack("q", "a", [lease.receipt], T0)  # a is done with x
    b.set_priority("q", y, 9, None, T0)
    assert order(b, "b") == [y, x]
    assert b.queue("q").exists(x)


def test_acked_after_the_change_the_message_is_freed() -> None:
    b = make("g")
    x, y = publish(b, 5, 1)
    b.set_priority("q", y, 9, None, T0)
    leased = b.receive("q", "g", "c", 2, None, T0)
    b.ack("q", "g", [m.receipt for m in leased], T0)
    b.compact(T0)
    assert not b.queue("q").exists(x) and not b.queue("q").exists(y)
    assert b.figures("q", "g", T0).depth == 0


def test_a_delayed_message_keeps_its_delay() -> None:
    b = make("g")
    items = [Incoming(0, 1000, None, None, None), Incoming(5, 0, None, None, None)]
    ids = b.publish("q", items, T0)
    q = b.queue("q")
    b.mark_durable(q.qid, q.next_seq)
    late, now_ = (split_rowid(i)[1] for i in ids)
    b.set_priority("q", late, 9, None, T0)
    assert b.message_states("q", late, T0) == [("g", MessageGroupState.DELAYED, 0)]
    assert order(b) == [now_]
    assert order(b, now=T0 + 1000) == [late]


def test_a_group_made_later_sees_the_new_priority() -> None:
    b = make()
    a, low = publish(b, 5, 1)
    b.set_priority("q", low, 9, None, T0)
    b.put_group("q", "g", GroupSettings(start_at=StartAt.EARLIEST), T0)
    assert order(b) == [low, a]


def test_the_change_is_written_for_the_store() -> None:
    b = make("g")
    (m,) = publish(b, 0)
    b.take_writes()
    b.set_priority("q", m, 7, b"doc", T0)
    (row,) = b.take_writes().rows(Kind.PRIORITY)
    assert row[:2] == (7, b"doc") and split_rowid(row[2])[1] == m


def test_refusals() -> None:
    b = make("g")
    (m,) = publish(b, 0)
    (lease,) = b.receive("q", "g", "c", 1, None, T0)
    b.ack("q", "g", [lease.receipt], T0)
    with pytest.raises(MessageNotFoundError):  # acked by every group: gone
        b.set_priority("q", m, 9, None, T0)
    with pytest.raises(MessageNotFoundError):
        b.set_priority("q", 12345, 9, None, T0)
    (fresh,) = publish(b, 0, durable=False)
    with pytest.raises(UnavailableError):
        b.set_priority("q", fresh, 9, None, T0)
    q = b.queue("q")
    b.mark_durable(q.qid, q.next_seq)
    b.delete_group("q", "g")
    b.put_group("q", "late", GroupSettings(start_at=StartAt.LATEST), T0)
    with pytest.raises(ConflictError):  # stored, but no group will deliver it again
        b.set_priority("q", fresh, 9, None, T0)
