"""Queue maxDepth against a real broker process: 429 queue_full with Retry-After, or the
oldest messages dropped (counted in a metric, gone after a restart too)."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest

from ferry.broker.client import BrokerClient, BrokerError
from ferry.broker.models import ErrorCode, OutgoingMessage, Overflow, QueueSettings

pytestmark = pytest.mark.functional


def _messages(*bodies: str) -> list[OutgoingMessage]:
    return [OutgoingMessage(body=b) for b in bodies]


async def test_reject_publish_answers_429_with_retry_after_and_stores_nothing(
        broker: Any) -> None:
    q = f"q-{uuid.uuid4().hex[:12]}"
    async with BrokerClient(broker.url) as client:
        await client.put_queue(q, QueueSettings(max_depth=2))
        await client.publish(q, _messages("a", "b"))
        with pytest.raises(BrokerError) as full:
            await client.publish(q, _messages("c"))
        assert (full.value.status, full.value.code) == (429, ErrorCode.QUEUE_FULL)
        assert (await client.queue_stats(q)).messages == 2
    async with aiohttp.ClientSession() as http, http.post(
            f"{broker.url}/v1/queues/{q}/messages", json={"messages": [{"body": "d"}]}) as r:
        assert r.status == 429
        assert r.headers["Retry-After"] == "1"
        body = await r.json()
        assert body["error"]["code"] == "queue_full"
        assert "maxDepth" in body["error"]["message"]


async def test_drop_oldest_keeps_the_newest_counts_the_drops_and_survives_a_restart(
        broker: Any) -> None:
    q = f"q-{uuid.uuid4().hex[:12]}"
    async with BrokerClient(broker.url) as client:
        await client.put_queue(q, QueueSettings(max_depth=2, overflow=Overflow.DROP_OLDEST))
        await client.put_group(q, "workers")
        await client.publish(q, _messages("a", "b", "c"))
        await client.publish(q, _messages("d"))
        assert (await client.queue_stats(q)).messages == 2
    async with aiohttp.ClientSession() as http, http.get(f"{broker.url}/metrics") as r:
        metrics = await r.text()
    assert f'ferry_messages_dropped_total{{queue="{q}"}} 2.0' in metrics
    broker.restart()
    async with BrokerClient(broker.url) as client:
        got = await client.receive(q, "workers", "reader", max=10)
        assert [d.body for d in got] == ["c", "d"]
