"""Pushed deliveries: Server-Sent Events and the pipelined WebSocket (GET /v1/ws)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from broker_api import Api
from fixtures.broker_process import BrokerProcess
from fixtures.brokers import acked, both_engines

from ferry.broker.client import BrokerClient
from ferry.broker.models import OutgoingMessage

pytestmark = [pytest.mark.functional, both_engines]


@pytest.fixture
async def api(broker: BrokerProcess) -> AsyncIterator[Api]:
    async with Api.connect(broker.url) as api:
        await api.create("jobs", "w")
        yield api


async def sse_events(resp: aiohttp.ClientResponse, n: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    event, data = "", ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()
        elif line == "" and data:
            assert event == "message"
            events.append(json.loads(data))
            event, data = "", ""
            if len(events) == n:
                break
    return events


async def test_sse_pushes_deliveries_within_max_in_flight(api: Api) -> None:
    ids = await api.publish("jobs", *[{"body": i} for i in range(5)])
    url = f"{api.url}/v1/queues/jobs/groups/w/stream?consumer=sse&max_in_flight=2"
    async with api.session.get(url) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        first = await sse_events(resp, 2)
        assert [m["id"] for m in first] == ids[:2]
        stats = await api.ok("GET", "/v1/queues/jobs/groups/w")
        assert stats["in_flight"] == 2 and stats["depth"] == 3  # no more than max_in_flight
        assert await api.settle("ack", "jobs", "w", [first[0]["receipt"]]) == ["ok"]
        (third,) = await sse_events(resp, 1)  # room for one more
        assert third["id"] == ids[2]
        later = await api.publish("jobs", {"body": "new"})
        await api.settle("ack", "jobs", "w", [first[1]["receipt"], third["receipt"]])
        rest = await sse_events(resp, 2)
        assert [m["id"] for m in rest] == ids[3:]
        await api.settle("ack", "jobs", "w", [rest[0]["receipt"]])
        (last,) = await sse_events(resp, 1)
        assert [last["id"]] == later


async def test_sse_rejects_bad_parameters(api: Api) -> None:
    for query, status in (("consumer=a%20b", 400), ("consumer=c&max_in_flight=0", 400),
                          ("", 400)):
        await api.refused("GET", f"/v1/queues/jobs/groups/w/stream?{query}", status=status)
    await api.refused("GET", "/v1/queues/jobs/groups/nope/stream?consumer=c", status=404,
                      code="group_not_found")


async def test_websocket_pipelines_publish_and_settle(api: Api) -> None:
    async with api.session.ws_connect(api.url + "/v1/ws") as ws:
        for seq in range(1, 21):  # twenty publishes in flight before any reply is read
            await ws.send_str(json.dumps({
                "op": "publish", "seq": seq, "queue": "jobs",
                "messages": [{"body": {"seq": seq, "i": i}} for i in range(5)],
            }))
        replies = {}
        while len(replies) < 20:
            frame = json.loads((await ws.receive()).data)
            assert frame["op"] == "reply" and frame.get("error") is None
            replies[frame["seq"]] = frame["ids"]
        ids = [i for seq in sorted(replies) for i in replies[seq]]
        assert len(set(ids)) == 100
        await ws.send_str(json.dumps({
            "op": "subscribe", "seq": 100, "queue": "jobs", "group": "w", "consumer": "ws",
            "max_in_flight": 30,
        }))
        got: list[dict[str, Any]] = []
        while len(got) < 100:
            frame = json.loads((await ws.receive()).data)
            if frame["op"] == "reply":  # to the subscribe, or to an ack
                assert frame.get("error") is None
                assert frame["seq"] == 100 or {r["status"] for r in frame["results"]} == {"ok"}
                continue
            assert frame["op"] == "deliver" and frame["sub"] == 100
            got.extend(frame["messages"])
            stats = await api.ok("GET", "/v1/queues/jobs/groups/w")
            assert stats["in_flight"] <= 30
            await ws.send_str(json.dumps({
                "op": "ack", "seq": 1000 + len(got), "queue": "jobs", "group": "w",
                "receipts": [m["receipt"] for m in frame["messages"]],
            }))
        assert sorted(m["id"] for m in got) == sorted(ids)
        await ws.send_str('{"op": "publish", "seq": 7, "queue": "jobs", "messages": []}')
        await ws.send_str("not json")
        await ws.send_str('{"op": "publish", "seq": 8, "queue": "nope", '
                          '"messages": [{"body": 1}]}')
        errors = {}
        while len(errors) < 3:
            frame = json.loads((await ws.receive()).data)
            if frame["op"] == "reply" and frame.get("error"):
                errors[frame["seq"]] = frame["error"]["code"]
        assert errors == {7: "bad_request", 0: "bad_request", 8: "queue_not_found"}
    stats = await api.ok("GET", "/v1/queues/jobs/groups/w")
    assert (stats["acked_total"], stats["lag"]) == (100, 0)


async def test_closing_a_websocket_hands_its_leases_back(api: Api) -> None:
    (mid,) = await api.publish("jobs", {"body": 1})
    async with api.session.ws_connect(api.url + "/v1/ws") as ws:
        await ws.send_str(json.dumps({
            "op": "subscribe", "seq": 1, "queue": "jobs", "group": "w", "consumer": "gone",
        }))
        while True:
            frame = json.loads((await ws.receive()).data)
            if frame["op"] == "deliver":
                break
    (m,) = await api.receive("jobs", "w", consumer="other", wait_ms=30_000)
    assert m["id"] == mid and m["delivery_count"] == 2


async def test_the_python_client_streams_over_the_websocket(broker: BrokerProcess) -> None:
    async with BrokerClient(broker.url) as client:
        await client.put_queue("jobs")
        await client.put_group("jobs", "w")
        ids = await client.publish("jobs", [OutgoingMessage(body=i) for i in range(300)],
                                   batch_size=50)
        async with client.consumer("jobs", "w", "py", max_in_flight=40) as consumer:
            seen = [d.id for d in await acked(consumer, len(ids))]
        assert sorted(seen) == sorted(ids)
        stats = await client.group_stats("jobs", "w")
        assert (stats.acked_total, stats.lag) == (300, 0)


async def test_closing_an_sse_stream_hands_its_leases_back(api: Api) -> None:
    (mid,) = await api.publish("jobs", {"body": 1})
    url = f"{api.url}/v1/queues/jobs/groups/w/stream?consumer=gone"
    async with api.session.get(url) as resp:
        (m,) = await sse_events(resp, 1)
        assert m["id"] == mid
    # The lease would last 30 s; the broker notices the closed stream and hands it back.
    (again,) = await api.receive("jobs", "w", consumer="other", wait_ms=20_000)
    assert again["id"] == mid and again["delivery_count"] == 2


async def test_a_huge_integer_in_a_websocket_frame_fails_that_frame_only(api: Api) -> None:
    """Issue 21: it used to end the connection, and the replies still pending with it."""
    async with api.session.ws_connect(api.url + "/v1/ws") as ws:
        for seq, body in ((1, "1"), (2, str(2**64)), (3, f"[-{2**70}]"), (4, "3")):
            await ws.send_str(f'{{"op": "publish", "seq": {seq}, "queue": "jobs", '
                              f'"messages": [{{"body": {body}}}]}}')
        replies = {}
        while len(replies) < 4:
            frame = json.loads((await ws.receive()).data)
            replies[frame["seq"]] = frame
        assert replies[2]["error"]["code"] == replies[3]["error"]["code"] == "bad_request"
        assert "64-bit" in replies[2]["error"]["message"]
        assert len(replies[1]["ids"]) == len(replies[4]["ids"]) == 1
        await ws.send_str('{"op": "publish", "seq": 5, "queue": "jobs", "messages": [{"body": 5}]}')
        assert json.loads((await ws.receive()).data)["seq"] == 5  # still open
    status, doc = await api.call("POST", "/v1/queues/jobs/messages",
                                 data=b'{"messages": [{"body": %d}]}' % 2**64,
                                 headers={"Content-Type": "application/json"})
    assert status == 400 and doc["error"]["code"] == "bad_request"
    assert (await api.ok("GET", "/v1/queues/jobs"))["published_total"] == 3
