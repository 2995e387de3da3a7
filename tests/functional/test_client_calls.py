"""Every BrokerClient call against a real broker process, over HTTP and the WebSocket."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from testsupport.ports import free_port

from ferry.broker.client import BrokerClient, BrokerError, NotFound, Unavailable
from ferry.broker.client.pipe import Pipe
from ferry.broker.models import (
    ErrorCode,
    GroupSettings,
    MessageGroupState,
    OutgoingMessage,
    QueueSettings,
    ReceiptStatus,
    StartAt,
)

pytestmark = pytest.mark.functional


@pytest.fixture
def q() -> str:
    """A queue name of this test's own, so tests can share one broker."""
    return f"q-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def unused_url() -> str:
    """A loopback URL nobody listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(params=["websocket", "http"])
async def client(request: pytest.FixtureRequest, broker: Any) -> AsyncIterator[BrokerClient]:
    async with BrokerClient(broker.url, websocket=request.param == "websocket") as c:
        yield c


async def test_queue_and_group_admin_round_trip(client: BrokerClient, q: str) -> None:
    settings = QueueSettings(visibility_timeout_ms=5000, max_deliveries=3, fair=True)
    created = await client.put_queue(q, settings)
    assert created.queue == q and created.settings == settings
    assert q in [stats.queue for stats in await client.list_queues()]

    group = await client.put_group(q, "billing", GroupSettings(start_at=StartAt.LATEST))
    assert (group.queue, group.group, group.settings.start_at) == (q, "billing", "latest")
    assert (await client.group_stats(q, "billing")).lag == 0
    assert [g.group for g in (await client.queue_stats(q)).groups] == ["billing"]

    await client.delete_group(q, "billing")
    with pytest.raises(NotFound) as missing_group:
        await client.group_stats(q, "billing")
    assert missing_group.value.code == ErrorCode.GROUP_NOT_FOUND

    await client.delete_queue(q)
    with pytest.raises(NotFound) as missing:
        await client.queue_stats(q)
    assert missing.value.code == ErrorCode.QUEUE_NOT_FOUND
    with pytest.raises(NotFound):
        await client.delete_queue(q)
    assert q not in [stats.queue for stats in await client.list_queues()]
    assert await client.health()


async def test_publish_receive_ack_in_order_with_every_field(client: BrokerClient, q: str) -> None:
    await client.put_queue(q)
    await client.put_group(q, "workers")
    messages = [
        OutgoingMessage(body={"n": n}, key=f"k{n % 3}", headers={"trace": str(n)})
        for n in range(1200)
    ]
    ids = await client.publish(q, messages, batch_size=100)
    assert len(ids) == len(set(ids)) == 1200

    got = await client.receive(q, "workers", "c1", max=1000)
    got += await client.receive(q, "workers", "c1", max=1000)
    assert [d.id for d in got] == ids
    assert got[7].body == {"n": 7} and got[7].key == "k1" and got[7].headers == {"trace": "7"}
    assert {d.delivery_count for d in got} == {1}

    results = await client.ack(q, "workers", [d.receipt for d in got])
    assert {r.status for r in results} == {ReceiptStatus.OK}
    stats = await client.group_stats(q, "workers")
    assert (stats.lag, stats.acked_total) == (0, 1200)
    again = await client.ack(q, "workers", [got[0].receipt])
    assert again[0].status != ReceiptStatus.OK  # a settled receipt is not applied twice


async def test_a_given_dedup_id_is_stored_once(client: BrokerClient, q: str) -> None:
    await client.put_queue(q)
    first = await client.publish(q, [OutgoingMessage(body=1, dedup_id="order-42")])
    second = await client.publish(q, [OutgoingMessage(body=1, dedup_id="order-42")])
    assert first == second
    assert (await client.queue_stats(q)).messages == 1


async def test_nack_redelivers_and_extend_keeps_the_lease(client: BrokerClient, q: str) -> None:
    await client.put_queue(q, QueueSettings(visibility_timeout_ms=60_000))
    await client.put_group(q, "workers")
    await client.publish(q, [OutgoingMessage(body="a"), OutgoingMessage(body="b")])
    first, second = await client.receive(q, "workers", "c1", max=2)

    extended = await client.extend(q, "workers", [first.receipt], visibility_timeout_ms=120_000)
    assert extended[0].status == ReceiptStatus.OK
    nacked = await client.nack(q, "workers", [second.receipt], delay_ms=0)
    assert nacked[0].status == ReceiptStatus.OK

    redelivered = await client.receive(q, "workers", "c2", max=10, wait_ms=2000)
    assert [(d.id, d.delivery_count) for d in redelivered] == [(second.id, 2)]
    stats = await client.group_stats(q, "workers")
    assert stats.in_flight == 2
    assert {c.name for c in stats.consumers} >= {"c1", "c2"}


async def test_dead_letters_list_page_and_redrive(client: BrokerClient, q: str) -> None:
    await client.put_queue(q, QueueSettings(max_deliveries=1))
    await client.put_group(q, "workers")
    ids = await client.publish(q, [OutgoingMessage(body=n) for n in range(3)])
    got = await client.receive(q, "workers", "c1", max=3)
    await client.nack(q, "workers", [d.receipt for d in got], delay_ms=0)

    page = await client.dead_letters(q, "workers", limit=2)
    assert len(page.messages) == 2 and page.next_cursor is not None
    rest = await client.dead_letters(q, "workers", limit=2, cursor=page.next_cursor)
    dead = page.messages + rest.messages
    assert sorted(d.id for d in dead) == sorted(ids)
    assert all(d.delivery_count == 1 and d.reason for d in dead)
    assert (await client.group_stats(q, "workers")).dead == 3

    info = await client.message(q, ids[0])
    assert (info.id, info.body) == (ids[0], 0)
    assert [(g.group, g.state) for g in info.groups] == [("workers", MessageGroupState.DEAD)]

    assert await client.redrive(q, "workers", [ids[0]]) == 1
    assert await client.redrive(q, "workers") == 2
    back = await client.receive(q, "workers", "c1", max=3, wait_ms=2000)
    assert sorted(d.id for d in back) == sorted(ids)
    assert (await client.group_stats(q, "workers")).dead == 0


async def test_peek_pages_stored_messages_without_leasing_them(client: BrokerClient,
                                                                q: str) -> None:
    await client.put_queue(q)
    await client.put_group(q, "g")
    await client.publish(q, [OutgoingMessage(body={"n": n}, key="k") for n in range(5)])
    leased = await client.receive(q, "g", "c1", max=2)
    first = await client.browse(q, limit=3)
    assert [m.body for m in first.messages] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert [m.groups[0].state for m in first.messages] == [
        MessageGroupState.IN_FLIGHT, MessageGroupState.IN_FLIGHT, MessageGroupState.READY]
    assert first.next_cursor is not None
    rest = await client.browse(q, limit=3, cursor=first.next_cursor)
    assert [m.body for m in rest.messages] == [{"n": 3}, {"n": 4}] and rest.next_cursor is None
    again = await client.receive(q, "g", "c1", max=3)  # peeking leased nothing
    assert [m.body for m in again] == [{"n": 2}, {"n": 3}, {"n": 4}]
    assert all(m.delivery_count == 1 for m in [*leased, *again])
    with pytest.raises(BrokerError) as bad:
        await client.browse(q, cursor="-1")
    assert bad.value.status == 400


async def test_browse_filters_cancel_and_purge(client: BrokerClient, q: str) -> None:
    await client.put_queue(q)
    await client.put_group(q, "g")
    ids = await client.publish(q, [OutgoingMessage(body=n, key=f"k{n % 2}") for n in range(5)])
    (leased,) = await client.receive(q, "g", "c1", max=1)
    odd = [m.body async for m in client.browse_all(q, limit=1, key="k1")]
    assert odd == [1, 3]
    ready = await client.browse(q, group="g", state=MessageGroupState.READY)
    assert [m.body for m in ready.messages] == [1, 2, 3, 4]
    await client.cancel(q, leased.id)
    (result,) = await client.ack(q, "g", [leased.receipt])
    assert result.status is ReceiptStatus.STALE
    assert await client.purge(q, "g") == 4
    assert await client.purge(q) == 0
    assert (await client.browse(q)).messages == []
    with pytest.raises(NotFound):
        await client.cancel(q, ids[1])


async def test_broker_errors_carry_the_servers_code(client: BrokerClient, q: str) -> None:
    with pytest.raises(NotFound) as no_queue:
        await client.publish("missing", [OutgoingMessage(body=1)])
    assert (no_queue.value.status, no_queue.value.code) == (404, ErrorCode.QUEUE_NOT_FOUND)

    await client.put_queue(q, QueueSettings(max_message_bytes=64))
    with pytest.raises(NotFound) as no_group:
        await client.receive(q, "missing", "c1")
    assert no_group.value.code == ErrorCode.GROUP_NOT_FOUND
    with pytest.raises(NotFound) as no_message:
        await client.message(q, "no-such-id")
    assert no_message.value.code == ErrorCode.MESSAGE_NOT_FOUND

    with pytest.raises(BrokerError) as bad_name:
        await client.put_queue("Not_A_Name")
    assert (bad_name.value.status, bad_name.value.code) == (400, ErrorCode.INVALID_NAME)
    with pytest.raises(BrokerError) as too_big:
        await client.publish(q, [OutgoingMessage(body="x" * 1000)])
    assert too_big.value.code == ErrorCode.MESSAGE_TOO_LARGE
    assert (await client.queue_stats(q)).messages == 0  # nothing half-stored


async def test_an_unreachable_broker_is_unavailable_after_retries(unused_url: str) -> None:
    async with BrokerClient(unused_url, retries=1) as client:
        assert not await client.health()
        with pytest.raises(Unavailable) as down:
            await client.list_queues()
        assert down.value.status == 0 and "unreachable" in down.value.message
        with pytest.raises(Unavailable):
            await client.publish(q, [OutgoingMessage(body=1)])


async def test_a_connection_dropped_while_sending_fails_the_call_and_prints_nothing(
    broker: Any,
) -> None:
    """The connection drops as a frame goes out (a broker killed mid-call): the call fails
    Unavailable (retryable), and no error is left behind for asyncio to print to the
    user's terminal as "Future exception was never retrieved"."""
    loop = asyncio.get_running_loop()
    printed: list[str] = []
    loop.set_exception_handler(lambda _loop, context: printed.append(context["message"]))
    try:
        assert await _call_as_the_connection_drops(broker.url)
        gc.collect()  # an unretrieved error is reported when its future is collected
    finally:
        loop.set_exception_handler(None)
    assert printed == []


async def _call_as_the_connection_drops(url: str) -> bool:
    """Whether the call failed Unavailable (no reference to its error outlives this)."""
    async with aiohttp.ClientSession() as session:
        pipe = await Pipe.open(session, f"{url}/v1/ws", {}, reply_s=5)
        try:
            # The socket is gone at this instant; the pipe's reader has not seen it yet.
            connection = pipe._ws._response.connection
            assert connection is not None and connection.transport is not None
            connection.transport.abort()
            seq = pipe.next_seq()
            try:
                await pipe.call(seq, f'{{"op": "list_queues", "seq": {seq}}}')
            except Unavailable:
                return True
            return False
        finally:
            await pipe.close()
