"""The operator's Kubernetes client against a server that takes the connection and never
answers: the call fails as a KubeError the handlers know to retry soon, not as an exception
kopf would retry only after its 60 s default backoff."""

from __future__ import annotations

import asyncio
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
