"""Admission: a request reserves its body's share of the memory budget before reading it,
and its body must keep arriving (BodyWatch).

Batches of deliveries reserve theirs when built (Runtime.hold_batch), so a long
poll holds nothing while it waits.
"""

from __future__ import annotations

from aiohttp import web

from ferry.broker.models import ErrorCode
from ferry.broker.transport.connections import BodyWatch
from ferry.broker.transport.errors import Handler, error_response
from ferry.broker.transport.limits import MAX_REQUEST_BYTES
from ferry.broker.transport.runtime import RUNTIME


@web.middleware
async def memory_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    n = request.content_length
    if n is None:  # chunked: as much as a request may carry
        n = MAX_REQUEST_BYTES if request.body_exists else 0
    if n > MAX_REQUEST_BYTES:
        return error_response(ErrorCode.PAYLOAD_TOO_LARGE,
                              f"the body is {n} bytes; a request may carry {MAX_REQUEST_BYTES}")
    if not n:
        return await handler(request)
    if not rt.memory.try_take(n):
        return error_response(ErrorCode.UNAVAILABLE,
                              "the broker's memory budget is taken by other requests; retry")
    watch = BodyWatch(request, rt.body_timeout_s)
    try:
        return await handler(request)
    except Exception:
        if watch.fired:  # the 408 went out already; the reading handler just saw the close
            return web.Response(status=408)
        raise
    finally:
        watch.stop()
        rt.memory.release(n)
