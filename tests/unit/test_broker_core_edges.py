"""Core rules at the edges of what a request may ask for (issue 21)."""

from __future__ import annotations

import pytest

from ferry.broker.core import Broker, Incoming
from ferry.broker.models import (
    Backoff,
    GroupSettings,
    MessageGroupState,
    QueueSettings,
    ReceiptStatus,
)

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
