"""A publish that spans a `kill -9` and restart of the broker finishes, and stores every
message exactly once (the retried batches carry the dedup ids of their first attempt)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from ferry.broker.client import BrokerClient
from ferry.broker.models import OutgoingMessage

pytestmark = pytest.mark.functional

COUNT = 30_000


@pytest.mark.parametrize("websocket", [True, False], ids=["websocket", "http"])
async def test_publish_retried_across_a_broker_kill_does_not_duplicate(
    broker: Any, websocket: bool
) -> None:
    q = f"q-{uuid.uuid4().hex[:12]}"
    async with BrokerClient(broker.url) as admin:
        await admin.put_queue(q)
        await admin.put_group(q, "workers")

    # Generous retries: the broker must get back up while they last, however slow the
    # machine is; the test asserts counts, never how long anything took.
    async with BrokerClient(broker.url, websocket=websocket, retries=12, timeout=10) as client:
        messages = [OutgoingMessage(body={"n": n}) for n in range(COUNT)]
        publishing = asyncio.create_task(client.publish(q, messages, batch_size=100))
        async with BrokerClient(broker.url, retries=0) as watcher:
            while not publishing.done():  # kill once the first batches are stored
                if (await watcher.queue_stats(q)).messages > 0:
                    break
        assert not publishing.done(), "publish finished before the kill: raise COUNT"
        broker.kill()
        await asyncio.to_thread(broker.restart)
        ids = await publishing

    assert len(ids) == COUNT
    assert len(set(ids)) == COUNT
    async with BrokerClient(broker.url) as reader:
        stats = await reader.queue_stats(q)
        assert stats.messages == COUNT
        bodies: list[int] = []
        while batch := await reader.receive(q, "workers", "check", max=1000):
            bodies += [d.body["n"] for d in batch]
            await reader.ack(q, "workers", [d.receipt for d in batch])
    assert sorted(bodies) == list(range(COUNT))
