"""The operator's own HTTP endpoints: /metrics (Prometheus) and /healthz."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ferry.kit.health import health, metrics_handler
from ferry.operator.metrics import REGISTRY


def app(ready: asyncio.Event, operator: asyncio.Task[None]) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        # Healthy while kopf runs and once it watches its resources.
        problem = None
        if operator.done():
            problem = "the operator stopped"
        elif not ready.is_set():
            problem = "starting: not watching its resources yet"
        return health(problem, ready=ready.is_set())

    application = web.Application()
    application.router.add_get("/metrics", metrics_handler(REGISTRY))
    application.router.add_get("/healthz", healthz)
    return application
