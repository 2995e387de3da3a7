"""Core rules at the edges of what a request may ask for (issue 21)."""

from __future__ import annotations

from array import array

import pytest

from ferry.broker.core import Broker, Incoming, Restored
from ferry.broker.models import (
    Backoff,
    GroupSettings,
    MessageGroupState,
    QueueSettings,
    ReceiptStatus,
)
from ferry.broker.transport.views import queue_stats

pytestmark = pytest.mark.unit

T0 = 1_000_000
DAY_MS = 24 * 3600 * 1000


def test_nack_backoff_saturates_instead_of_overflowing() -> None:
    """multiplier 100: 100**155 is beyond a double; the delay is max_ms from then on."""
    b = Broker(T0)
    b.put_queue("q", QueueSettings(max_deliveries=1000), T0)
    backoff = Backoff(initial_ms=1, multiplier=100, max_ms=DAY_MS)
    b.put_group("q", "g", GroupSettings(nack_backoff=backoff), T0)
    b.publish("q", [Incoming(0, 0, None, None, None)], T0)
    q = b.queue("q")
    b.mark_durable(q.qid, q.next_seq)
    now = T0
    for n in range(1, 201):
        (m,) = b.receive("q", "g", "c", 1, None, now)
        assert m.delivery_count == n
        assert b.nack("q", "g", [m.receipt], None, now) == [ReceiptStatus.OK]
        delay = b.group("q", "g").backoff_ms(n)
        assert 0 < delay <= DAY_MS
        assert b.message_states("q", m.seq, now)[0][1] is MessageGroupState.DELAYED
        now += delay  # the message is due again at exactly its backoff
    assert len(b.receive("q", "g", "c", 1, None, now)) == 1  # still deliverable


def test_figures_read_while_a_restart_restores_say_they_are_partial() -> None:
    """A restarted broker serves while it reads its messages back: a queue's count (and a
    group's lag) then covers only what was read, and says so rather than look like the
    truth (autoscalers treat it as no figure; the test fixtures wait for the end)."""
    b = Broker(T0)
    q = b.restore_queue(1, "q", QueueSettings(), T0, published_total=4, next_seq=5,
                        first_seq=1)
    b.restore_group(1, q, "g", GroupSettings(), start_seq=1, acked_total=0)
    first_half = Restored(array("q", [1, 2]), array("b", [0, 0]), array("q", [T0, T0]))
    q.restore_chunk(first_half, 3)
    partial = queue_stats(q, T0)
    assert (partial.messages, partial.groups[0].lag) == (2, 2)
    assert partial.restoring and partial.groups[0].restoring
    q.restore_chunk(Restored(array("q", [3, 4]), array("b", [0, 0]), array("q", [T0, T0])), 5)
    q.finish_restore()
    whole = queue_stats(q, T0)
    assert (whole.messages, whole.groups[0].lag, whole.restoring) == (4, 4, False)
