"""Consumer against a real broker: every mode delivers, leases survive slow handlers, close()
hands back what was not acked."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fixtures.brokers import acked
from testsupport.waiting import eventually_async

from ferry.broker.client import BrokerClient, BrokerError, Consumer, Mode, NotFound
from ferry.broker.models import Delivery, ErrorCode, OutgoingMessage, QueueSettings

pytestmark = pytest.mark.functional

MODES: list[Mode] = ["stream", "sse", "poll"]


@pytest.fixture
async def client(broker: Any) -> AsyncIterator[BrokerClient]:
    async with BrokerClient(broker.url) as c:
        yield c


async def _queue(client: BrokerClient, visibility_timeout_ms: int, count: int) -> str:
    q = f"q-{uuid.uuid4().hex[:12]}"
    await client.put_queue(q, QueueSettings(visibility_timeout_ms=visibility_timeout_ms))
    await client.put_group(q, "workers")
    if count:
        await client.publish(q, [OutgoingMessage(body=n) for n in range(count)])
    return q


async def _take(consumer: Consumer, n: int) -> list[Delivery]:
    got: list[Delivery] = []
    async for delivery in consumer:
        got.append(delivery)
        if len(got) == n:
            break
    return got


@pytest.mark.parametrize("mode", MODES)
async def test_every_mode_delivers_every_message_once_when_acked(
    client: BrokerClient, mode: Mode
) -> None:
    q = await _queue(client, 30_000, 500)
    async with client.consumer(q, "workers", "c1", mode=mode, max_in_flight=50) as consumer:
        seen = [d.body for d in await acked(consumer, 500)]
        assert consumer.held == 0
    assert sorted(seen) == list(range(500))
    stats = await client.group_stats(q, "workers")
    assert (stats.lag, stats.acked_total, stats.in_flight) == (0, 500, 0)


@pytest.mark.parametrize("mode", MODES)
async def test_at_most_max_in_flight_are_held_unacked(client: BrokerClient, mode: Mode) -> None:
    q = await _queue(client, 30_000, 20)
    async with client.consumer(q, "workers", "c1", mode=mode, max_in_flight=5) as consumer:
        first = await _take(consumer, 5)
        # Nothing more may come while five are unacked: the others stay ready.
        stats = await client.group_stats(q, "workers")
        assert (stats.in_flight, stats.depth) == (5, 15)
        await consumer.ack(*first)
        assert len(await _take(consumer, 5)) == 5


@pytest.mark.parametrize(("auto_extend", "kept"), [(True, True), (False, False)])
async def test_a_slow_handler_keeps_its_lease_only_with_auto_extend(
    client: BrokerClient, auto_extend: bool, kept: bool
) -> None:
    """The lease is 1.5 s; the handler holds the message for three leases' time while a
    second consumer keeps asking. With auto_extend the second one never gets it; without,
    it does (so this test can tell the two apart)."""
    q = await _queue(client, 1500, 1)
    slow = client.consumer(
        q, "workers", "slow", mode="poll", max_in_flight=1, auto_extend=auto_extend
    )
    async with slow:
        (held,) = await _take(slow, 1)
        stolen: list[Delivery] = []
        for _ in range(9):  # ~4.5 s of asking, every 0.5 s
            stolen += await client.receive(q, "workers", "other", max=1, wait_ms=500)
            if stolen:
                break
        if kept:
            assert stolen == []
            results = await client.ack(q, "workers", [held.receipt])
            assert results[0].status == "ok"
        else:
            assert [d.id for d in stolen] == [held.id]
            assert stolen[0].delivery_count == 2
            await client.ack(q, "workers", [stolen[0].receipt])


@pytest.mark.parametrize("mode", ["stream", "sse", "poll"])
async def test_close_hands_back_unacked_deliveries_at_once(
    client: BrokerClient, mode: Mode
) -> None:
    """A long lease (60 s) means only a nack can make these visible again before the
    test ends: the second consumer gets exactly the seven the first did not ack."""
    q = await _queue(client, 60_000, 10)
    first = client.consumer(q, "workers", "first", mode=mode, max_in_flight=10)
    async with first:
        got = await _take(first, 10)
        await first.ack(*got[:3])
    await first.close()  # safe twice

    again: list[Delivery] = []
    while len(again) < 7:
        batch = await client.receive(q, "workers", "second", max=10, wait_ms=5000)
        assert batch, "the unacked deliveries were not handed back"
        again += batch
    assert sorted(d.id for d in again) == sorted(d.id for d in got[3:])
    assert all(d.delivery_count == 2 for d in again)


@pytest.mark.parametrize("mode", ["stream", "poll"])
async def test_a_stopped_consumer_takes_no_new_leases_and_finishes_its_own(
    client: BrokerClient, mode: Mode
) -> None:
    """What a consumer told to stop (SIGTERM) does: stop_receiving, work off and ack what it
    holds, close. Nothing it held goes back, nothing new comes: the rest of the queue is
    delivered to the next consumer for the first time."""
    q = await _queue(client, 60_000, 20)
    async with client.consumer(q, "workers", "leaving", mode=mode, max_in_flight=5) as first:
        got = await _take(first, 2)
        async def holds_five() -> bool:
            return first.held == 5
        await eventually_async(holds_five, "the consumer to hold 5 deliveries")
        await first.stop_receiving()
        got += [d async for d in first]  # the three it had received; then the end
        assert len(got) == 5
        await first.ack(*got)
        await first.stop_receiving()  # safe twice
        stats = await client.group_stats(q, "workers")
        assert (stats.in_flight, stats.depth, stats.acked_total) == (0, 15, 5)
    rest = await client.receive(q, "workers", "staying", max=20, wait_ms=5000)
    assert len(rest) == 15
    assert all(d.delivery_count == 1 for d in rest)


async def test_unsubscribing_an_unknown_subscription_is_refused(client: BrokerClient) -> None:
    pipe = await client.open_pipe()
    try:
        with pytest.raises(BrokerError) as refused:
            await pipe.unsubscribe(4711)
        assert refused.value.code == ErrorCode.BAD_REQUEST
    finally:
        await pipe.close()


async def test_a_consumer_of_a_missing_group_raises_not_found(client: BrokerClient) -> None:
    q = await _queue(client, 30_000, 0)
    for mode in MODES:
        with pytest.raises(NotFound):
            async with client.consumer(q, "nobody", "c1", mode=mode) as consumer:
                await asyncio.wait_for(anext(consumer), 30)


@pytest.mark.parametrize("mode", MODES)
async def test_a_consumer_rides_out_a_broker_kill_and_restart(broker: Any, mode: Mode) -> None:
    """Everything published before and after a `kill -9` is delivered and acked in the
    end; the consumer reconnects on its own (messages unacked at the kill come again)."""
    async with BrokerClient(broker.url, retries=12) as client:
        q = await _queue(client, 5_000, 100)
        acked: set[int] = set()
        async with client.consumer(q, "workers", "c1", mode=mode, max_in_flight=20) as consumer:
            async for delivery in consumer:
                await consumer.ack(delivery)
                acked.add(delivery.body)
                if len(acked) == 50:
                    break
            broker.kill()
            await asyncio.to_thread(broker.restart)
            await client.publish(q, [OutgoingMessage(body=n) for n in range(100, 150)])
            async for delivery in consumer:
                await consumer.ack(delivery)
                acked.add(delivery.body)
                if len(acked) == 150:
                    break
        assert acked == set(range(150))
        assert (await client.group_stats(q, "workers")).lag == 0


@pytest.mark.parametrize("mode", MODES)
async def test_deleting_the_group_ends_iteration_with_not_found(
    client: BrokerClient, mode: Mode
) -> None:
    q = await _queue(client, 30_000, 5)
    async with client.consumer(q, "workers", "c1", mode=mode) as consumer:
        first = await anext(consumer)
        await consumer.ack(first)
        await client.delete_group(q, "workers")
        with pytest.raises(NotFound):
            async for delivery in consumer:  # the four left in the buffer, then the end
                assert delivery.body in range(1, 5)
