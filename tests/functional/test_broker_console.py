"""The console's two broker-side parts over real sockets: its static files and the stats
stream (GET /v1/stats/stream). tests/browser drives the page itself in chromium."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from broker_api import Api
from fixtures.broker_process import BrokerProcess
from fixtures.brokers import GUARDED_TOKEN

from ferry.broker.transport import console

pytestmark = pytest.mark.functional

AUTH = {"Authorization": f"Bearer {GUARDED_TOKEN}"}


@pytest.fixture
async def api(guarded_broker: BrokerProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(headers=AUTH) as s:
        yield Api(s, guarded_broker.url)


async def events(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """(event type, parsed data) of a Server-Sent Events response."""
    kind, data = "message", ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif not line and data:
            yield kind, json.loads(data)
            kind, data = "message", ""


async def test_console_files_are_served_without_a_token(guarded_broker: BrokerProcess) -> None:
    async with aiohttp.ClientSession() as s:
        for path, name in console.PATHS.items():
            async with s.get(guarded_broker.url + path) as r:
                assert r.status == 200, path
                assert r.content_type == console.FILES[name]
                assert "default-src 'self'" in r.headers["Content-Security-Policy"]
                assert await r.read()
        async with s.get(guarded_broker.url + "/console/index.html") as r:
            page = await r.text()
        # Everything the page loads is served here (no CDN).
        for src in ("uPlot.iife.min.js", "uPlot.min.css", "console.js", "console.css"):
            assert f'"{src}"' in page
        async with s.get(guarded_broker.url + "/console/secret.txt") as r:
            assert r.status == 401  # not a console file: nothing is open but the list


async def test_stats_stream_pushes_every_queue_with_the_brokers_clock(api: Api) -> None:
    await api.create("orders", "workers")
    await api.publish("orders", {"body": 1}, {"body": 2})
    url = api.url + "/v1/stats/stream?interval_ms=200"
    async with api.session.get(url) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        seen: list[dict[str, Any]] = []
        async for kind, doc in events(resp):
            assert kind == "stats"
            seen.append(doc)
            if len(seen) == 1:  # the next event shows what happened since
                await api.publish("orders", {"body": 3})
            elif doc["queues"][0]["published_total"] == 3:
                break
    first, last = seen[0], seen[-1]
    (q,) = first["queues"]
    assert q["queue"] == "orders" and q["published_total"] == 2
    assert [(g["group"], g["depth"]) for g in q["groups"]] == [("workers", 2)]
    assert last["queues"][0]["groups"][0]["depth"] == 3
    assert last["at_ms"] > first["at_ms"]


async def test_stats_stream_needs_the_token_and_bounds_its_interval(
    guarded_broker: BrokerProcess, api: Api,
) -> None:
    async with aiohttp.ClientSession() as s, s.get(guarded_broker.url + "/v1/stats/stream") as r:
        assert r.status == 401
        assert (await r.json())["error"]["code"] == "unauthorized"
    for bad in ("199", "60001", "soon"):
        await api.refused("GET", f"/v1/stats/stream?interval_ms={bad}")


async def test_stats_stream_ends_with_the_drain(guarded_broker: BrokerProcess, api: Api) -> None:
    """SIGTERM: the stream ends (the console reconnects), the broker exits 0."""
    async with api.session.get(api.url + "/v1/stats/stream?interval_ms=60000") as resp:
        seen = events(resp)
        kind, _ = await anext(seen)
        assert kind == "stats"
        stopping = asyncio.create_task(asyncio.to_thread(guarded_broker.stop))
        rest = [kind async for kind, _ in seen]  # the broker ends the stream: no more events
        assert await stopping == 0, guarded_broker.logs()[-3000:]
    assert rest == []
