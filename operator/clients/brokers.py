"""Broker admin calls for the operator: a client per broker URL and token, one connection
pool per broker URL.

Failures come out as `BrokerTrouble` with a problem the reconcilers judge: missing (404),
unreachable (connection refused, timeouts), unauthorized (401/403) or rejected (any other
answer). The message is ours, never the remote end's: a broker URL is user input, so what
the far side says (or how a connection failed) must not reach a status a tenant can read.
Only the HTTP status and, when it is one of Ferry's, the error code are kept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from ferry.broker.client import BrokerClient, BrokerError, NotFound, Unavailable
from ferry.broker.models import ErrorCode, GroupSettings, GroupStats, QueueSettings, QueueStats
from ferry.operator.clients.errors import BrokerTrouble
from ferry.operator.identity import Problem

_KNOWN_CODES = frozenset(c.value for c in ErrorCode)


def _answer(e: BrokerError) -> str:
    code = str(getattr(e.code, "value", e.code))
    return f"HTTP {e.status}" + (f" {code}" if code in _KNOWN_CODES else "")


@asynccontextmanager
async def _translated(url: str) -> AsyncIterator[None]:
    try:
        yield
    except NotFound as e:
        raise BrokerTrouble(
            Problem.MISSING, f"{url}: not found on the broker ({_answer(e)})") from e
    except Unavailable as e:
        why = f" ({_answer(e)})" if e.status else ""
        raise BrokerTrouble(Problem.UNREACHABLE, f"{url}: the broker did not answer{why}") from e
    except BrokerError as e:
        if e.status in (401, 403):
            raise BrokerTrouble(Problem.UNAUTHORIZED,
                                f"{url}: the broker refused the token ({_answer(e)})") from e
        raise BrokerTrouble(
            Problem.REJECTED, f"{url}: the broker refused the call ({_answer(e)})") from e


class Brokers:
    """Clients by URL and token; short timeouts and few retries, since a timer tries again."""

    def __init__(self, *, timeout: float = 5.0, retries: int = 1) -> None:
        self._timeout, self._retries = timeout, retries
        self._clients: dict[tuple[str, str | None], BrokerClient] = {}
        self._pools: dict[str, aiohttp.TCPConnector] = {}

    def _client(self, url: str, token: str | None) -> BrokerClient:
        found = self._clients.get((url, token))
        if found is None:
            pool = self._pools.get(url)
            if pool is None:
                # One pool per broker, whatever the number of its queues' tokens: a pool per
                # client kept a connection per Queue alive, and a broker shared by more Queues
                # than its --max-connections (1,000) refused the rest for good. Unbounded: it
                # holds as many connections as calls are in flight at once (a bound would
                # fail calls that waited for one past the timeout, and a group's 20 s long
                # poll must never wait behind, or hold up, the stats passes).
                pool = self._pools[url] = aiohttp.TCPConnector(limit=0)
            found = self._clients[(url, token)] = BrokerClient(
                url, token=token, timeout=self._timeout, retries=self._retries, websocket=False,
                connector=pool)
        return found

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        pools, self._pools = list(self._pools.values()), {}
        for client in clients:
            await client.close()
        for pool in pools:
            await pool.close()

    async def ensure_queue(self, url: str, token: str | None, queue: str,
                           settings: QueueSettings) -> QueueStats:
        """PUT is idempotent: creates the queue, or brings its settings back to the spec."""
        async with _translated(url):
            return await self._client(url, token).put_queue(queue, settings)

    async def ensure_group(self, url: str, token: str | None, queue: str, group: str,
                           settings: GroupSettings) -> GroupStats:
        async with _translated(url):
            return await self._client(url, token).put_group(queue, group, settings)

    async def queue_stats(self, url: str, token: str | None, queue: str) -> QueueStats:
        async with _translated(url):
            return await self._client(url, token).queue_stats(queue)

    async def group_stats(self, url: str, token: str | None, queue: str, group: str, *,
                          wait_ms: int = 0) -> GroupStats:
        """With wait_ms, a long poll: answered once the group has a backlog (or after it)."""
        async with _translated(url):
            return await self._client(url, token).group_stats(queue, group, wait_ms=wait_ms)

    async def delete_queue(self, url: str, token: str | None, queue: str) -> None:
        async with _translated(url):
            await self._client(url, token).delete_queue(queue)

    async def delete_group(self, url: str, token: str | None, queue: str, group: str) -> None:
        async with _translated(url):
            await self._client(url, token).delete_group(queue, group)
