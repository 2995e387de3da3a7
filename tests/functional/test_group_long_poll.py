"""GET group stats with wait_ms: the broker answers when the first message arrives, so an
autoscaler waiting at zero replicas learns of it at the publish, not on its next poll."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest

from ferry.broker.client import BrokerClient
from ferry.broker.models import ErrorCode, OutgoingMessage

pytestmark = pytest.mark.functional
LONG = 60_000  # far longer than the bound below: only the publish can end the wait in time


async def test_a_waiting_stats_call_answers_at_the_first_publish(broker: Any) -> None:
    q = f"q-{uuid.uuid4().hex[:12]}"
    async with BrokerClient(broker.url) as client:
        await client.put_queue(q)
        await client.put_group(q, "workers")
        waiting = asyncio.create_task(client.group_stats(q, "workers", wait_ms=LONG))
        await asyncio.sleep(0.5)  # let it park (not synchronisation: a miss still passes)
        assert not waiting.done()
        await client.publish(q, [OutgoingMessage(body="first")])
        stats = await asyncio.wait_for(waiting, timeout=30)
        assert (stats.backlog, stats.depth) == (1, 1)
        # With a backlog it answers at once, whatever wait_ms says.
        again = await asyncio.wait_for(client.group_stats(q, "workers", wait_ms=LONG), 30)
        assert again.backlog == 1


async def test_without_messages_it_answers_after_wait_ms(broker: Any) -> None:
    q = f"q-{uuid.uuid4().hex[:12]}"
    async with BrokerClient(broker.url) as client:
        await client.put_queue(q)
        await client.put_group(q, "workers")
        stats = await client.group_stats(q, "workers", wait_ms=200)
        assert stats.backlog == 0


@pytest.mark.parametrize("wait_ms", ["-1", "60001", "soon"])
async def test_a_bad_wait_is_a_400_with_a_code(broker: Any, wait_ms: str) -> None:
    q = f"q-{uuid.uuid4().hex[:12]}"
    async with BrokerClient(broker.url) as client:
        await client.put_queue(q)
        await client.put_group(q, "workers")
    async with aiohttp.ClientSession() as http, http.get(
            f"{broker.url}/v1/queues/{q}/groups/workers", params={"wait_ms": wait_ms}) as r:
        assert r.status == 400
        assert (await r.json())["error"]["code"] == ErrorCode.BAD_REQUEST.value
