"""The aiohttp application: routes, middlewares and the background clock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from ferry.broker.store import Store
from ferry.broker.transport import admin, messaging, metrics, openapi, socket_api, streaming
from ferry.broker.transport.auth import auth_middleware
from ferry.broker.transport.errors import errors_middleware
from ferry.broker.transport.limits import MAX_REQUEST_BYTES
from ferry.broker.transport.runtime import RUNTIME, Runtime, now_ms, queue_key

log = logging.getLogger("ferry.broker")

TICK_S = 0.05  # lease expiry and retry resolution
COMPACT_EVERY = 20  # ticks: retention, dedup window, freeing acked messages

health = web.RouteTableDef()


@health.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@health.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    if rt.draining:
        return web.json_response({"status": "draining"}, status=503)
    if rt.store.writer.failed:
        return web.json_response({"status": "store failing"}, status=503)
    # Serving already while a restart still reads stored messages in (oldest first).
    return web.json_response({"status": "ready", "restoring": not rt.loaded.is_set()})


async def _clock(rt: Runtime) -> None:
    n = 0
    while True:
        await asyncio.sleep(TICK_S)
        now = now_ms()
        woke = rt.core.tick(now)
        n += 1
        if n % COMPACT_EVERY == 0:
            rt.core.compact(now)
        rt.flush(wait=False)
        for q in woke:
            rt.signals.notify(queue_key(q.qid))


async def _background(app: web.Application) -> AsyncIterator[None]:
    rt = app[RUNTIME]
    tasks = [
        asyncio.create_task(_clock(rt), name="ferry-broker-clock"),
        asyncio.create_task(rt.restore_messages(), name="ferry-broker-restore"),
    ]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    rt.flush(wait=False)


def build_app(rt: Runtime) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[RUNTIME] = rt
    metrics.install(app, rt)  # outermost middleware: sees every final status
    app.middlewares.extend([errors_middleware, auth_middleware])
    app.add_routes(health)
    app.add_routes(admin.routes)
    app.add_routes(messaging.routes)
    app.add_routes(streaming.routes)
    app.add_routes(socket_api.routes)
    openapi.install(app, auth=rt.tokens is not None)
    app.cleanup_ctx.append(_background)
    return app


def open_runtime(
    data_dir: str, loop: asyncio.AbstractEventLoop, log_level: str = "info"
) -> Runtime:
    """Rebuild the core from the data directory and start the committer process."""
    store = Store(data_dir, loop, log_level)
    core = store.open(now_ms())  # messages stream in once serving (Runtime.restore_messages)
    store.start()
    return Runtime(core=core, store=store)
