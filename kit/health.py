"""The endpoints every Ferry service answers the same way: /healthz and /metrics.

Health: 200 `{"status": "ok", ...}` or 503 `{"status": "unhealthy", "reason": "...", ...}`,
extra figures (e.g. "restoring") as further keys.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HealthCheck = Callable[[], Awaitable[str | None]]  # None when healthy, else the reason


def health_doc(problem: str | None, **details: Any) -> tuple[int, dict[str, Any]]:
    """The status and document of a health answer (for answers written without aiohttp)."""
    if problem is None:
        return 200, {"status": "ok", **details}
    return 503, {"status": "unhealthy", "reason": problem, **details}


def health(problem: str | None, **details: Any) -> web.Response:
    status, doc = health_doc(problem, **details)
    return web.json_response(doc, status=status)


async def always_healthy() -> str | None:
    return None


def health_handler(check: HealthCheck = always_healthy) -> Handler:
    async def healthz(_: web.Request) -> web.Response:
        return health(await check())

    return healthz


def metrics_handler(registry: CollectorRegistry) -> Handler:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics


def request_metrics(registry: CollectorRegistry, prefix: str,
                    buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS) -> Middleware:
    """A middleware counting requests by route, method and status, and timing them by route.

    Series: `<prefix>_requests_total{route,method,status}` and
    `<prefix>_request_duration_seconds{route}`. A handler that raises counts as 500.
    """
    requests = Counter(f"{prefix}_requests", "HTTP requests", ["route", "method", "status"],
                       registry=registry)
    latency = Histogram(f"{prefix}_request_duration_seconds", "HTTP request latency",
                        ["route"], registry=registry, buckets=buckets)

    @web.middleware
    async def measured(request: web.Request, handler: Handler) -> web.StreamResponse:
        t0 = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            requests.labels(route, request.method, str(status)).inc()
            latency.labels(route).observe(time.perf_counter() - t0)

    return measured
