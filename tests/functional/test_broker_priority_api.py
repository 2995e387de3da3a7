"""PATCH /v1/queues/{queue}/messages/{id} on a real broker process, through the client."""

from __future__ import annotations

import aiohttp
import pytest
from fixtures.broker_process import BrokerProcess
from fixtures.brokers import both_engines

from ferry.broker.client import BrokerClient, BrokerError
from ferry.broker.models import ErrorCode, MessageGroupState, OutgoingMessage

pytestmark = [pytest.mark.functional, both_engines]


async def test_changed_priority_orders_delivery_and_survives_a_restart(
    broker: BrokerProcess,
) -> None:
    async with BrokerClient(broker.url, websocket=False) as c:
        await c.put_queue("jobs")
        await c.put_group("jobs", "w")
        await c.put_group("jobs", "audit")
        ids = await c.publish("jobs", [
            OutgoingMessage(body="a", priority=5),
            OutgoingMessage(body="b", priority=5),
            OutgoingMessage(body="urgent", priority=1),
            OutgoingMessage(body="later", priority=9),
        ])
        a, b, urgent, later = ids
        info = await c.set_priority("jobs", urgent, 9)
        assert info.priority == 9 and info.body == "urgent"
        assert {g.state for g in info.groups} == {MessageGroupState.READY}
        await c.set_priority("jobs", later, 0)
        got = await c.receive("jobs", "w", "c1", max=4)
        assert [m.id for m in got] == [urgent, a, b, later]
        assert [m.priority for m in got] == [9, 5, 5, 0]
        await c.ack("jobs", "w", [m.receipt for m in got])

    broker.restart()
    async with BrokerClient(broker.url, websocket=False) as c:
        assert (await c.message("jobs", urgent)).priority == 9
        got = await c.receive("jobs", "audit", "c2", max=4)
        assert [m.id for m in got] == [urgent, a, b, later]
        assert [m.priority for m in got] == [9, 5, 5, 0]


async def test_bad_changes_are_refused_with_clear_errors(broker: BrokerProcess) -> None:
    async with BrokerClient(broker.url, websocket=False) as c:
        await c.put_queue("jobs")
        await c.put_group("jobs", "w")
        (done, kept) = await c.publish("jobs", [OutgoingMessage(body=1), OutgoingMessage(body=2)])
        (m, _) = await c.receive("jobs", "w", "c", max=2)
        await c.ack("jobs", "w", [m.receipt])

        for mid in (done, "12345", "not-an-id"):
            with pytest.raises(BrokerError) as e:
                await c.set_priority("jobs", mid, 3)
            assert (e.value.status, e.value.code) == (404, ErrorCode.MESSAGE_NOT_FOUND)
        with pytest.raises(BrokerError) as e:
            await c.set_priority("nope", kept, 3)
        assert e.value.code == ErrorCode.QUEUE_NOT_FOUND

    async with aiohttp.ClientSession() as s:
        for body in ({"priority": 10}, {"priority": -1}, {}, {"priority": 1, "x": 2}):
            async with s.patch(f"{broker.url}/v1/queues/jobs/messages/{kept}", json=body) as r:
                assert r.status == 400
                assert (await r.json())["error"]["code"] == "bad_request"
    async with BrokerClient(broker.url, websocket=False) as c:
        assert (await c.message("jobs", kept)).priority == 0  # nothing changed
