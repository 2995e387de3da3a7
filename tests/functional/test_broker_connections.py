"""Slow and many sockets (issue 21): read timeouts, a connection limit, health always answered,
and open WebSockets closed at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import resource
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from broker_api import Api
from fixtures.broker_process import BrokerProcess
from testsupport.waiting import eventually_async

pytestmark = pytest.mark.functional

WAIT_S = 60.0  # liveness bound for what the broker must do on its own


async def raw_request(port: int, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh socket; (status, headers, body) of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        async with asyncio.timeout(WAIT_S):
            status_line = await reader.readline()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                k, _, v = line.decode().partition(":")
                headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), headers, body
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def idle_sockets(port: int, n: int) -> AsyncIterator[list[asyncio.StreamWriter]]:
    """n connections that never send a request (slowloris)."""
    writers = []
    try:
        for _ in range(n):
            _, w = await asyncio.open_connection("127.0.0.1", port)
            writers.append(w)
        yield writers
    finally:
        for w in writers:
            w.close()


async def test_health_answers_and_others_get_503_at_the_connection_limit(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    b = broker_factory("--max-connections", "200", "--header-timeout-seconds", "120")
    async with idle_sockets(b.port, 400):
        for path, status in (("/healthz", 200), ("/readyz", 200)):
            got, _, body = await raw_request(b.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"
                                             .encode())
            assert got == status and json.loads(body)["status"] in ("ok", "ready")
        got, headers, body = await raw_request(
            b.port, b"GET /v1/queues HTTP/1.1\r\nHost: x\r\n\r\n")
        assert got == 503 and headers["retry-after"] == "1"
        error = json.loads(body)["error"]
        assert error["code"] == "unavailable" and "200 connections" in error["message"]
    async with aiohttp.ClientSession() as s:  # the idle ones gone, everything is served again
        # Noticing 400 closed sockets takes the broker a moment: eventually served.
        async def served() -> bool:
            return (await Api(s, b.url).call("GET", "/v1/queues"))[0] == 200

        await eventually_async(served, "served again after the idle sockets closed", WAIT_S)


async def test_a_request_head_that_never_ends_is_closed(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    b = broker_factory("--header-timeout-seconds", "1")
    reader, writer = await asyncio.open_connection("127.0.0.1", b.port)
    writer.write(b"GET /v1/queues HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and nothing more
    async with asyncio.timeout(WAIT_S):
        assert await reader.read() == b""  # closed by the broker
    writer.close()


async def test_a_body_that_stops_arriving_gets_408_and_nothing_happens(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    b = broker_factory("--body-timeout-seconds", "1")
    async with Api.connect(b.url) as api:
        await api.ok("PUT", "/v1/queues/q")
        status, _, body = await raw_request(
            b.port, b"POST /v1/queues/q/messages HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                    b'{"messages": [{"body": 1}')  # 25 of 100 bytes, then silence
        assert status == 408 and json.loads(body)["error"]["code"] == "bad_request"
        stats = await api.ok("GET", "/v1/queues/q")
        assert stats["published_total"] == 0
        assert len(await api.publish("q", {"body": 2})) == 1


async def test_sigterm_closes_open_websockets_instead_of_waiting_out_the_drain(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    """Issue 21: with a WebSocket open, shutdown took twice --drain-seconds."""
    b = broker_factory("--drain-seconds", "120")
    async with Api.connect(b.url) as api:
        await api.create("jobs", "w")
        async with api.session.ws_connect(b.url + "/v1/ws") as ws:
            await ws.send_json({"op": "subscribe", "seq": 1, "queue": "jobs", "group": "w",
                                "consumer": "c"})
            assert (await ws.receive_json())["seq"] == 1
            loop = asyncio.get_running_loop()
            # Far less than the drain: the old broker waited all of it for the socket.
            stopped = loop.run_in_executor(None, functools.partial(b.stop, timeout=60))
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1001  # going away
            assert await stopped == 0
