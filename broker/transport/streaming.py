"""Server-Sent Events: deliveries pushed to one consumer, at most max_in_flight unacked."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from aiohttp import web

from ferry.broker.core import CoreError, Leased
from ferry.broker.models import MAX_LEASE_MS
from ferry.broker.transport.encoding import encode_delivery
from ferry.broker.transport.leases import LeaseBook
from ferry.broker.transport.runtime import RUNTIME, Runtime, flow_key, now_ms, queue_key
from ferry.broker.transport.views import consumer_name, int_query, name_param

routes = web.RouteTableDef()

KEEPALIVE_S = 15.0
CHECK_S = 1.0
PUSH_BATCH = 500
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}


@dataclass(frozen=True, slots=True)
class Pushed:
    parts: list[bytes]  # encoded deliveries
    leased: list[Leased]
    held: int  # memory budget held until written: the writer releases it


async def push_ready(
    rt: Runtime, queue: str, group: str, consumer: str, max_in_flight: int,
    vt_ms: int | None,
) -> Pushed | None:
    """Lease what the consumer has room for; None when it has no room or nothing is ready.

    A batch holds its share of the memory budget (Runtime.hold_batch); the caller
    releases it once the batch is written. Without budget left nothing is leased (None): the caller
    waits and tries again.
    """
    g = rt.core.group(queue, group)
    c = g.leases.consumers.get(consumer)
    room = max_in_flight - (c.in_flight if c else 0)
    if room <= 0:
        return None
    held = rt.hold_batch(g.queue)
    if not held:
        return None
    try:
        found: list[tuple[int, bytes, Leased]] = []
        while not found:  # a whole batch the group's filter skips: lease again
            leased = rt.core.receive(queue, group, consumer, min(room, PUSH_BATCH), vt_ms,
                                     now_ms())
            rt.flush(wait=False)
            if not leased:
                break
            found = await rt.deliveries(g.queue, group, leased)
    except BaseException:
        rt.memory.release(held)
        raise
    if not found:
        rt.memory.release(held)
        return None
    parts = [encode_delivery(rid, doc, m.delivery_count, m.receipt) for rid, doc, m in found]
    return Pushed(parts, [m for _, _, m in found], held)


async def wait_for_room_or_messages(rt: Runtime, queue: str, group: str, consumer: str,
                                    seconds: float) -> bool:
    g = rt.core.group(queue, group)
    return await rt.signals.wait(
        (queue_key(g.queue.qid), flow_key(g.gid, consumer)), seconds
    )


@routes.get("/v1/queues/{queue}/groups/{group}/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    queue, group = name_param(request, "queue"), name_param(request, "group")
    consumer = consumer_name(request.query.get("consumer", ""))
    max_in_flight = int_query(request, "max_in_flight", 100, 1, 10_000)
    vt = int_query(request, "visibility_timeout_ms", 0, 0, MAX_LEASE_MS) or None
    rt.core.group(queue, group)  # 404 before the stream starts
    resp = web.StreamResponse(headers=SSE_HEADERS)
    await resp.prepare(request)
    book = LeaseBook(rt, queue, group, max_in_flight)  # handed back when the client goes
    idle = 0.0
    try:
        with contextlib.suppress(ConnectionError, CoreError):
            while not rt.draining and not client_gone(request):
                pushed = await push_ready(rt, queue, group, consumer, max_in_flight, vt)
                if pushed:
                    book.remember(pushed.leased)
                    try:
                        await resp.write(b"".join(b"event: message\ndata: " + p + b"\n\n"
                                                  for p in pushed.parts))
                    finally:
                        rt.memory.release(pushed.held)
                    continue
                # Wake at least every second to notice a client that went away.
                if await wait_for_room_or_messages(rt, queue, group, consumer, CHECK_S):
                    idle = 0.0
                    continue
                idle += CHECK_S
                if idle >= KEEPALIVE_S:
                    idle = 0.0
                    await resp.write(b": keepalive\n\n")
    finally:
        if client_gone(request) or rt.draining:
            book.hand_back()
    return resp


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
