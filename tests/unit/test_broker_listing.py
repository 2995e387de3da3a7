"""Listing many queues (GET /v1/queues, /metrics) leaves the event loop to other requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from ferry.broker.models import GroupSettings, QueueSettings
from ferry.broker.transport import RUNTIME, build_app, open_runtime
from ferry.broker.transport.admin import list_queues
from ferry.broker.transport.metrics import metrics
from ferry.broker.transport.runtime import STATS_CHUNK, now_ms

pytestmark = pytest.mark.unit

QUEUES = 20 * STATS_CHUNK


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[web.Application]:
    rt = open_runtime(str(tmp_path), asyncio.get_running_loop())
    try:
        now = now_ms()
        for i in range(QUEUES):
            rt.core.put_queue(f"q{i}", QueueSettings(), now)
            rt.core.put_group(f"q{i}", "g", GroupSettings(), now)
        rt.core.take_writes()  # nothing of this needs to reach the disk
        yield build_app(rt)
    finally:
        rt.store.close()


async def turns_while(call: Awaitable[web.StreamResponse]) -> tuple[int, web.StreamResponse]:
    """How many times another task ran while the call was being answered."""
    turns = 0
    done = False

    async def other_request() -> None:
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_request())
    try:
        resp = await call
    finally:
        done = True
        await other
    return turns, resp


@pytest.mark.parametrize("path, handler", [("/v1/queues", list_queues), ("/metrics", metrics)])
async def test_many_queues_are_listed_a_chunk_at_a_time(
    app: web.Application, path: str, handler: Callable[[web.Request], Awaitable[web.Response]],
) -> None:
    """Issue 21: 10,000 queues blocked the event loop 0.5-0.8 s per listing."""
    turns, resp = await turns_while(handler(make_mocked_request("GET", path, app=app)))
    assert isinstance(resp, web.Response) and isinstance(resp.body, bytes)
    if path == "/v1/queues":
        assert len(orjson.loads(resp.body)["queues"]) == QUEUES
    else:
        assert resp.body.count(b"ferry_group_lag{") == QUEUES
    assert turns >= QUEUES // STATS_CHUNK - 1  # others ran between every chunk
    assert len(app[RUNTIME].core.queues) == QUEUES  # listing left every queue in place
