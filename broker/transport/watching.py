"""GET /v1/stats/stream: every queue's stats pushed as Server-Sent Events (the console's
live charts), one `stats` event every interval_ms until the client goes or the broker drains.

Each event is a StatsEvent: the same QueueStats as GET /v1/queues plus the moment they were
read, so a reader turns the counters (published_total, acked_total) into rates itself.
Streams share one snapshot (Latest): with many consoles open the broker still builds every
queue's stats at most once per FRESH_MS (10,000 queues take 0.5-0.8 s to build).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from ferry.broker.transport.admin import every_queue_stats
from ferry.broker.transport.encoding import encode_list
from ferry.broker.transport.rights import grant_of
from ferry.broker.transport.runtime import RUNTIME, now_ms
from ferry.broker.transport.streaming import SSE_HEADERS, client_gone
from ferry.broker.transport.tokens import Grant
from ferry.broker.transport.views import int_query

routes = web.RouteTableDef()

PATH = "/v1/stats/stream"
INTERVAL_MS = 1000
MIN_INTERVAL_MS = 200  # each event may build every queue's stats: no faster than this
MAX_INTERVAL_MS = 60_000
# A snapshot younger than this is served again: a stream's next event (>= MIN_INTERVAL_MS
# after its last) is then always a newer snapshot than its last one.
FRESH_MS = MIN_INTERVAL_MS // 2
# Nothing notifies this key: waiting on it sleeps the interval, but wakes at once on the
# drain (Signals.notify_all), so a stream never holds the broker's shutdown up.
_NEVER = ("stats",)


@dataclass(frozen=True, slots=True)
class Snapshot:
    at_ms: int
    queues: list[tuple[str, bytes]]  # (name, QueueStats JSON) by name

    def event(self, grant: Grant | None = None) -> bytes:
        """The `stats` event: {"at_ms":N,"queues":[...]}, the queues' JSON spliced in; with
        a token's grant, only the queues it covers (one snapshot serves every token)."""
        queues = encode_list(b"queues", (doc for name, doc in self.queues
                                         if grant is None or grant.covers(name)))
        return b'event: stats\ndata: {"at_ms":%d,%b\n\n' % (self.at_ms, queues[1:])


@dataclass
class Latest:
    """The last snapshot built, shared by every stream (one build at a time)."""

    snapshot: Snapshot = Snapshot(-FRESH_MS, [])
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def get(self, clock: Callable[[], int],
                  build: Callable[[int], Awaitable[Snapshot]]) -> Snapshot:
        if clock() - self.snapshot.at_ms < FRESH_MS:
            return self.snapshot
        async with self.lock:
            now = clock()
            if now - self.snapshot.at_ms >= FRESH_MS:  # not built by another stream meanwhile
                self.snapshot = await build(now)
            return self.snapshot


LATEST = web.AppKey("stats_latest", Latest)


def install(app: web.Application) -> None:
    app[LATEST] = Latest()
    app.add_routes(routes)


@routes.get(PATH)
async def stats_stream(request: web.Request) -> web.StreamResponse:
    rt, latest = request.app[RUNTIME], request.app[LATEST]
    interval_ms = int_query(request, "interval_ms", INTERVAL_MS, MIN_INTERVAL_MS,
                            MAX_INTERVAL_MS)

    async def build(now: int) -> Snapshot:
        return Snapshot(now, await every_queue_stats(rt, now))

    resp = web.StreamResponse(headers=SSE_HEADERS)
    await resp.prepare(request)
    with contextlib.suppress(ConnectionError):
        while not rt.draining and not client_gone(request):
            await resp.write((await latest.get(now_ms, build)).event(grant_of(request)))
            await rt.signals.wait((_NEVER,), interval_ms / 1000)
    return resp
