"""A client against a broker newer than itself: every answer may carry fields this client
does not know (a rolling upgrade rolls the brokers first). A real broker behind a proxy
that adds one to every JSON object it answers, over HTTP and the WebSocket."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ferry.broker.client import BrokerClient, NotFound
from ferry.broker.models import OutgoingMessage
from ferry.kit.serving import listening

pytestmark = pytest.mark.functional
ADDED = "added_in_a_later_version"
SOCKETS = web.AppKey("sockets", list[str])


# Maps whose keys are the user's (a message's body and headers, a filter's), not fields.
USERS = {"body", "headers", "match", "prefix"}


def _grown(value: Any) -> Any:
    """`value` with ADDED in each of its objects, as a newer broker's answer might be."""
    if isinstance(value, dict):
        return {**{k: v if k in USERS else _grown(v) for k, v in value.items()},
                ADDED: {"n": 1}}
    if isinstance(value, list):
        return [_grown(v) for v in value]
    return value


def _grow_text(text: str) -> str:
    try:
        return json.dumps(_grown(json.loads(text)))
    except ValueError:  # not JSON: as it is
        return text


def _proxy(upstream: str) -> web.Application:
    async def forward(request: web.Request) -> web.StreamResponse:
        url = upstream + request.rel_url.path_qs
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with aiohttp.ClientSession() as session:
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return await _socket(request, session, url, headers)
            async with session.request(request.method, url, headers=headers,
                                       data=await request.read()) as answer:
                body = await answer.read()
                if answer.content_type == "application/json":
                    body = _grow_text(body.decode()).encode()
                keep = {k: v for k, v in answer.headers.items()
                        if k.lower() not in ("content-length", "content-encoding",
                                             "transfer-encoding")}
                return web.Response(status=answer.status, body=body, headers=keep)

    app = web.Application()
    app[SOCKETS] = []
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def _socket(request: web.Request, session: aiohttp.ClientSession, url: str,
                  headers: dict[str, str]) -> web.WebSocketResponse:
    keep = {k: v for k, v in headers.items() if k.lower() == "authorization"}
    request.app[SOCKETS].append(url)
    async with session.ws_connect(url, headers=keep) as upstream:
        ws = web.WebSocketResponse()
        await ws.prepare(request)

        async def down() -> None:
            async for msg in upstream:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await ws.send_str(_grow_text(msg.data))
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
            await ws.close()

        relay = asyncio.create_task(down())
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await upstream.send_str(msg.data)
        finally:
            relay.cancel()
        return ws


@dataclass
class Newer:
    url: str
    sockets: list[str]  # WebSockets the proxy carried


@pytest.fixture
async def newer(broker: Any) -> AsyncIterator[Newer]:
    app = _proxy(broker.url)
    async with listening(app, "127.0.0.1", 0, drain_seconds=0) as port:
        yield Newer(f"http://127.0.0.1:{port}", app[SOCKETS])


@pytest.mark.parametrize("websocket", [True, False], ids=["websocket", "http"])
async def test_a_client_reads_answers_with_fields_it_does_not_know(
        newer: Newer, websocket: bool) -> None:
    q = f"q-{uuid.uuid4().hex[:12]}"
    async with BrokerClient(newer.url, websocket=websocket, retries=0) as client:
        await client.put_queue(q)
        await client.put_group(q, "workers")
        ids = await client.publish(q, [OutgoingMessage(body={"n": n}) for n in range(3)])
        got = await client.receive(q, "workers", "w1", max=3)
        assert [d.body for d in got] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert [d.id for d in got] == ids
        await client.ack(q, "workers", [d.receipt for d in got])
        stats = await client.group_stats(q, "workers")
        assert (stats.lag, stats.acked_total) == (0, 3)
        with pytest.raises(NotFound):  # an error answer with a field it does not know
            await client.group_stats(q, "nobody")
    assert len(newer.sockets) == (1 if websocket else 0)  # the WebSocket was the one way
