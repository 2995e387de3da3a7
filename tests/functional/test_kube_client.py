"""The operator's Kubernetes client against a server that takes the connection and never
answers: the call fails as a KubeError the handlers know to retry soon, not as an exception
kopf would retry only after its 60 s default backoff."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from kubernetes.client import Configuration

from ferry.operator.clients.errors import KubeError
from ferry.operator.clients.kube import KubeClient

pytestmark = pytest.mark.functional


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """An HTTP address on loopback that reads requests and never answers them."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read(65536)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_an_unanswered_call_is_a_transient_kube_error(silent_server: str) -> None:
    cfg = Configuration()
    cfg.host = silent_server
    cfg.verify_ssl = False
    kube = KubeClient(cfg, timeout=0.5)
    try:
        with pytest.raises(KubeError) as raised:
            await kube.get("v1", "ConfigMap", "shop", "orders")
    finally:
        await kube.close()
    assert raised.value.status == 0 and raised.value.transient


async def test_calls_in_flight_are_capped_and_queued_ones_do_not_time_out() -> None:
    """A burst waits in the client, not at the API server: at most max_in_flight requests
    reach the server at once, and waiting for a slot counts against no timeout."""
    in_flight, most = 0, 0
    connections: list[asyncio.StreamWriter] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await serve(reader, writer)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal in_flight, most
        while await reader.readuntil(b"\r\n\r\n"):
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0.2)
            in_flight -= 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 2\r\n\r\n{}")
            await writer.drain()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    cfg = Configuration()
    cfg.host = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    cfg.verify_ssl = False
    kube = KubeClient(cfg, timeout=0.5, max_in_flight=3)
    try:
        found = await asyncio.gather(*(kube.get("v1", "ConfigMap", "shop", f"c{i}")
                                       for i in range(12)))
    finally:
        await kube.close()
        for writer in connections:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        server.close()
        await server.wait_closed()
    assert len(found) == 12 and most == 3  # 12 x 0.2 s / 3 = 0.8 s, past the 0.5 s timeout
