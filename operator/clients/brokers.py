"""Broker admin calls for the operator, one pooled client per broker URL.

Failures come out as `BrokerTrouble` with a problem the reconcilers judge: missing
(404), unreachable (connection refused, timeouts) or rejected (any other answer).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ferry.broker.client import BrokerClient, BrokerError, NotFound, Unavailable
from ferry.broker.models import GroupSettings, GroupStats, QueueSettings, QueueStats
from ferry.operator.clients.errors import BrokerTrouble

MISSING, UNREACHABLE, REJECTED = "missing", "unreachable", "rejected"


@asynccontextmanager
async def _translated(url: str) -> AsyncIterator[None]:
    try:
        yield
    except NotFound as e:
        raise BrokerTrouble(MISSING, f"{url}: {e.message}") from e
    except Unavailable as e:
        raise BrokerTrouble(UNREACHABLE, f"{url}: {e.message}") from e
    except BrokerError as e:
        raise BrokerTrouble(REJECTED, f"{url}: {e}") from e


class Brokers:
    """Clients by URL; short timeouts and few retries, since a timer tries again anyway."""

    def __init__(self, *, timeout: float = 5.0, retries: int = 1) -> None:
        self._timeout, self._retries = timeout, retries
        self._clients: dict[str, BrokerClient] = {}

    def _client(self, url: str) -> BrokerClient:
        if url not in self._clients:
            self._clients[url] = BrokerClient(url, timeout=self._timeout, retries=self._retries)
        return self._clients[url]

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()

    async def ensure_queue(self, url: str, queue: str, settings: QueueSettings) -> QueueStats:
        """PUT is idempotent: creates the queue, or brings its settings back to the spec."""
        async with _translated(url):
            return await self._client(url).put_queue(queue, settings)

    async def ensure_group(self, url: str, queue: str, group: str,
                           settings: GroupSettings) -> GroupStats:
        async with _translated(url):
            return await self._client(url).put_group(queue, group, settings)

    async def queue_stats(self, url: str, queue: str) -> QueueStats:
        async with _translated(url):
            return await self._client(url).queue_stats(queue)

    async def group_stats(self, url: str, queue: str, group: str, *,
                          wait_ms: int = 0) -> GroupStats:
        """With wait_ms, a long poll: answered once the group has a backlog (or after it)."""
        async with _translated(url):
            return await self._client(url).group_stats(queue, group, wait_ms=wait_ms)

    async def delete_queue(self, url: str, queue: str) -> None:
        async with _translated(url):
            await self._client(url).delete_queue(queue)

    async def delete_group(self, url: str, queue: str, group: str) -> None:
        async with _translated(url):
            await self._client(url).delete_group(queue, group)
