"""GET /v1/stats/stream: every queue's stats pushed as Server-Sent Events (the console's
live charts), one `stats` event every interval_ms until the client goes or the broker drains.

Each event is a StatsEvent: the same QueueStats as GET /v1/queues plus the moment they were
read, so a reader turns the counters (published_total, acked_total) into rates itself.
"""

from __future__ import annotations

import contextlib

from aiohttp import web

from ferry.broker.transport.admin import every_queue_stats
from ferry.broker.transport.encoding import encode_list
from ferry.broker.transport.rights import grant_of
from ferry.broker.transport.runtime import RUNTIME, now_ms
from ferry.broker.transport.streaming import SSE_HEADERS, client_gone
from ferry.broker.transport.views import int_query

routes = web.RouteTableDef()

PATH = "/v1/stats/stream"
INTERVAL_MS = 1000
MIN_INTERVAL_MS = 200  # each event builds every queue's stats: no faster than this
MAX_INTERVAL_MS = 60_000
# Nothing notifies this key: waiting on it sleeps the interval, but wakes at once on the
# drain (Signals.notify_all), so a stream never holds the broker's shutdown up.
_NEVER = ("stats",)


@routes.get(PATH)
async def stats_stream(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    interval_ms = int_query(request, "interval_ms", INTERVAL_MS, MIN_INTERVAL_MS,
                            MAX_INTERVAL_MS)
    resp = web.StreamResponse(headers=SSE_HEADERS)
    await resp.prepare(request)
    with contextlib.suppress(ConnectionError):
        while not rt.draining and not client_gone(request):
            now = now_ms()
            queues = encode_list(b"queues", await every_queue_stats(rt, now, grant_of(request)))
            # {"at_ms":N,"queues":[...]}: the list's object with at_ms spliced in first
            await resp.write(b'event: stats\ndata: {"at_ms":%d,%b\n\n' % (now, queues[1:]))
            await rt.signals.wait((_NEVER,), interval_ms / 1000)
    return resp
