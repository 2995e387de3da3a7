"""W3C traceparent from publish to delivery on a real broker process, on both engines."""

from __future__ import annotations

from typing import Any, Literal

import orjson
import pytest
from broker_api import Api
from fixtures.broker_process import BrokerProcess
from fixtures.brokers import acked, both_engines

from ferry.broker.client import BrokerClient

pytestmark = [pytest.mark.functional, both_engines]

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
OWN = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"


async def test_a_publish_traceparent_reaches_every_consumer(
        broker: BrokerProcess, api: Api) -> None:
    await api.create("jobs", "http", "sse", "ws")
    status, doc = await api.call("POST", "/v1/queues/jobs/messages", {"messages": [
        {"body": 0}, {"body": 1, "headers": {"traceparent": OWN, "x": "y"}},
        {"body": 2, "headers": {"x": "z"}},
    ]}, headers={"traceparent": TP})
    assert status == 200, doc
    want = [{"traceparent": TP}, {"traceparent": OWN, "x": "y"},
            {"traceparent": TP, "x": "z"}]
    assert [m["headers"] for m in await api.receive("jobs", "http")] == want
    # Over the WebSocket too, a publish frame's traceparent field.
    async with api.session.ws_connect(api.url + "/v1/ws") as ws:
        await ws.send_str(orjson.dumps({"op": "publish", "seq": 1, "queue": "jobs",
                                        "messages": [{"body": 3}],
                                        "traceparent": OWN}).decode())
        reply = orjson.loads((await ws.receive()).data)
        assert reply["ids"], reply
    want.append({"traceparent": OWN})
    async with BrokerClient(broker.url) as client:
        for group, mode in (("sse", "sse"), ("ws", "stream")):
            assert await headers_pushed(client, group, mode, len(want)) == want


async def headers_pushed(client: BrokerClient, group: str, mode: Literal["sse", "stream"],
                         n: int) -> list[dict[str, str]]:
    async with client.consumer("jobs", group, "c", mode=mode) as c:
        return [d.headers for d in await acked(c, n)]


BAD = [
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  # no flags
    "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # a later version's, unread
    "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",  # uppercase
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero parent id
    "garbage",
]


@pytest.mark.parametrize("bad", BAD)
async def test_a_bad_traceparent_is_refused_and_nothing_is_stored(
        api: Api, bad: str) -> None:
    await api.create("jobs")
    await api.refused("POST", "/v1/queues/jobs/messages", {"messages": [{"body": 0}]},
                      headers={"traceparent": bad})
    async with api.session.ws_connect(api.url + "/v1/ws") as ws:
        frame: dict[str, Any] = {"op": "publish", "seq": 7, "queue": "jobs",
                                 "messages": [{"body": 0}], "traceparent": bad}
        await ws.send_str(orjson.dumps(frame).decode())
        reply = orjson.loads((await ws.receive()).data)
        assert reply["seq"] == 7 and reply["error"]["code"] == "bad_request", reply
    assert (await api.ok("GET", "/v1/queues/jobs"))["messages"] == 0
