"""Browse a queue's stored messages, cancel one, purge what is ready (HTTP; the WebSocket
calls the same functions).

Browsing is a peek: nothing is leased or changed. Cancel and purge change state like
any settle: the core first, answered once the store has committed it.
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from ferry.broker.core import Queue, rowid
from ferry.broker.models import BrowseQuery, MessagePage, PurgeResponse
from ferry.broker.transport.messaging import message_info
from ferry.broker.transport.runtime import (
    RUNTIME,
    Runtime,
    durable,
    flow_key,
    now_ms,
    queue_key,
)
from ferry.broker.transport.views import json_response, name_param

routes = web.RouteTableDef()


async def browse_page(rt: Runtime, queue: str, query: BrowseQuery) -> MessagePage:
    """A page of the queue's stored messages matching the query, with their group states."""
    after = int(query.cursor) if query.cursor is not None else 0
    seqs, nxt = rt.core.browse(
        queue, query.limit, after, now_ms(), group=query.group, state=query.state,
        key=query.key, priority=query.priority,
    )
    q = rt.core.queue(queue)
    docs = await rt.store.bodies.get([rowid(q.qid, s) for s in seqs])
    now = now_ms()
    # Messages gone meanwhile (acked by every group, cancelled) are left out.
    out = [message_info(rt, q, seq, orjson.loads(doc), now) for seq in seqs
           if (doc := docs.get(rowid(q.qid, seq))) is not None and q.exists(seq)]
    return MessagePage(messages=out, next_cursor=None if nxt is None else str(nxt))


def cancel_now(rt: Runtime, queue: str, message_id: str) -> asyncio.Future[None] | None:
    """Cancel in the core now; the future resolves once the store has it."""
    seq = rt.core.seq_of(queue, message_id)
    rt.core.cancel(queue, seq)
    fut = rt.flush()
    _wake_consumers(rt, rt.core.queue(queue))  # leases ended: room for more
    return fut


async def purge(rt: Runtime, queue: str, group: str | None) -> int:
    """Purge step by step (other requests run in between), answered once every step is
    durable; how many messages went."""
    n = 0
    pending: list[asyncio.Future[None]] = []
    for so_far in rt.core.purge(queue, group, now_ms()):
        n = so_far
        fut = rt.flush()
        if fut is not None:
            pending.append(fut)
        await asyncio.sleep(0)
    for outcome in await asyncio.shield(asyncio.gather(*pending, return_exceptions=True)):
        if isinstance(outcome, BaseException):
            raise outcome
    return n


def _wake_consumers(rt: Runtime, q: Queue) -> None:
    for g in q.groups.values():
        for name in g.leases.consumers:
            rt.signals.notify(flow_key(g.gid, name))
    rt.signals.notify(queue_key(q.qid))


@routes.get("/v1/queues/{queue}/messages")
async def browse(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    queue = name_param(request, "queue")
    # Query values are text: parsed laxly ("10" is 10); bad ones answer 400 (middleware).
    query = BrowseQuery.model_validate(dict(request.query))
    return json_response(await browse_page(rt, queue, query))


@routes.delete("/v1/queues/{queue}/messages/{id}")
async def cancel(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    queue = name_param(request, "queue")
    await durable(cancel_now(rt, queue, request.match_info["id"]))
    return web.Response(status=204)


@routes.post("/v1/queues/{queue}/purge")
async def purge_queue(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    n = await purge(rt, name_param(request, "queue"), None)
    return json_response(PurgeResponse(purged=n))


@routes.post("/v1/queues/{queue}/groups/{group}/purge")
async def purge_group(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    queue, group = name_param(request, "queue"), name_param(request, "group")
    return json_response(PurgeResponse(purged=await purge(rt, queue, group)))
