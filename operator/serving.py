"""The operator's own HTTP endpoints: /metrics (Prometheus) and /healthz."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ferry.operator.metrics import REGISTRY


def app(ready: asyncio.Event, operator: asyncio.Task[None]) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        # Healthy while kopf runs and once it watches its resources.
        ok = ready.is_set() and not operator.done()
        return web.json_response({"ok": ok, "ready": ready.is_set()}, status=200 if ok else 503)

    application = web.Application()
    application.router.add_get("/metrics", metrics)
    application.router.add_get("/healthz", healthz)
    return application


async def start(host: str, port: int, ready: asyncio.Event,
                operator: asyncio.Task[None]) -> web.AppRunner:
    runner = web.AppRunner(app(ready, operator), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
