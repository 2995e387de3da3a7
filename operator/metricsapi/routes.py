"""The aiohttp application serving `external.metrics.k8s.io/v1beta1`.

/healthz, /readyz and /metrics answer anyone (probes and Prometheus); everything under
/apis needs the front proxy's client certificate (see `frontproxy`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from ferry.kit.health import health, health_handler, metrics_handler
from ferry.operator.metricsapi import documents, frontproxy, selectors
from ferry.operator.metricsapi.access import Authorizer, ReviewUnavailableError
from ferry.operator.metricsapi.lags import (
    DirectoryError,
    LagReader,
    LagUnavailableError,
    StatsCache,
)
from ferry.operator.metricsapi.ownership import Holder, Watch

log = logging.getLogger("ferry.metricsapi")

READER = web.AppKey("reader", LagReader)
CACHE = web.AppKey("cache", StatsCache)
AUTH = web.AppKey("auth", frontproxy.RequestHeaderConfig)
AUTHORIZER = web.AppKey("authorizer", Authorizer)
REQUESTS = web.AppKey("requests", Counter)
USER = web.RequestKey("user", frontproxy.User)
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/livez", "/metrics"})
BASE = f"/apis/{documents.GROUP}/{documents.VERSION}"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _failure(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(documents.status(code, reason, message), status=code)


@web.middleware
async def _errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    app = request.app
    try:
        if request.path not in OPEN_PATHS:
            peercert = request.transport.get_extra_info("peercert") if request.transport else None
            request[USER] = frontproxy.authenticate(peercert, request.headers, app[AUTH])
        response = await handler(request)
    except frontproxy.UnauthenticatedError as error:
        log.warning("unauthenticated request", extra={"path": request.path, "why": str(error)})
        response = _failure(401, "Unauthorized", str(error))
    except web.HTTPNotFound:
        response = _failure(404, "NotFound", f"the server could not find {request.path}")
    except web.HTTPMethodNotAllowed:
        response = _failure(405, "MethodNotAllowed", f"{request.method} is not supported here")
    app[REQUESTS].labels(code=str(response.status)).inc()
    return response


def _discovery(document: Callable[[], dict[str, Any]]) -> Handler:
    """A discovery route: the same document for every caller."""
    async def handler(_: web.Request) -> web.Response:
        return web.json_response(document())
    return handler


async def _metric(request: web.Request) -> web.Response:
    namespace, metric = request.match_info["namespace"], request.match_info["metric"]
    if metric not in documents.METRICS:
        return _failure(404, "NotFound", f"no external metric {metric!r}; this server serves "
                        f"{', '.join(documents.METRICS)}")
    user = request[USER]
    try:
        allowed = await request.app[AUTHORIZER].may_read(user, metric, namespace)
    except ReviewUnavailableError as error:
        return _failure(503, "ServiceUnavailable", f"could not authorize: {error}")
    if not allowed:
        return _failure(403, "Forbidden", f"user {user.name!r} may not list {metric} of "
                        f"{documents.GROUP} in namespace {namespace!r}")
    try:
        selector = selectors.parse(request.query.get("labelSelector"))
    except selectors.SelectorError as error:
        return _failure(400, "BadRequest", f"labelSelector: {error}")
    try:
        samples = await request.app[READER].samples(namespace, selector)
    except (LagUnavailableError, DirectoryError) as error:
        log.warning("lag unavailable", extra={"namespace": namespace, "why": str(error)})
        return _failure(503, "ServiceUnavailable", str(error))
    log.info("served", extra={"user": user.name, "namespace": namespace, "metric": metric,
                              "selector": request.query.get("labelSelector", ""),
                              "items": len(samples)})
    body = documents.metric_value_list(metric, samples, datetime.now(UTC).replace(microsecond=0))
    return web.json_response(body)


def _holds(watch: Watch, holder: Holder) -> float:
    return float(watch.last.holder is holder)


def _ready(watch: Watch | None) -> Callable[[web.Request], Awaitable[web.Response]]:
    """/readyz: 503 while the APIService routes elsewhere (or is missing), saying to whom."""
    async def readyz(_: web.Request) -> web.Response:
        if watch is None:
            return health(None)
        seen = watch.last
        return health(seen.problem, apiservice=seen.holder.value, served_by=seen.served_by,
                      **({"message": seen.message} if seen.problem else {}))
    return readyz


def make_app(reader: LagReader, cache: StatsCache, auth: frontproxy.RequestHeaderConfig,
             authorizer: Authorizer, watch: Watch | None = None) -> web.Application:
    """`watch`: who holds the APIService (None with --group and no Kubernetes API)."""
    app = web.Application(middlewares=[_errors_and_auth])
    registry = CollectorRegistry()
    app[READER], app[CACHE], app[AUTH] = reader, cache, auth
    app[AUTHORIZER] = authorizer
    app[REQUESTS] = Counter("ferry_metrics_api_requests", "requests answered, by HTTP status",
                            ["code"], registry=registry)
    reads = Gauge("ferry_metrics_api_broker_reads", "group stats read from brokers",
                  registry=registry)
    reads.set_function(lambda: cache.reads)
    hits = Gauge("ferry_metrics_api_cache_hits", "values served without a broker read",
                 registry=registry)
    hits.set_function(lambda: cache.hits)
    if watch is not None:
        holder = Gauge("ferry_metrics_api_apiservice", "1 for who holds the cluster's "
                       "external metrics APIService: ours, taken, absent, unknown",
                       ["holder"], registry=registry)
        for h in Holder:
            holder.labels(h.value).set_function(functools.partial(_holds, watch, h))

        async def watching(_: web.Application) -> AsyncIterator[None]:
            async with watch.running():
                yield
        app.cleanup_ctx.append(watching)
    for probe in ("/healthz", "/livez"):
        app.router.add_get(probe, health_handler())
    app.router.add_get("/readyz", _ready(watch))
    app.router.add_get("/metrics", metrics_handler(registry))
    app.router.add_get("/apis", _discovery(documents.api_group_list))
    app.router.add_get(f"/apis/{documents.GROUP}", _discovery(documents.api_group))
    app.router.add_get(BASE, _discovery(documents.api_resource_list))
    app.router.add_get(BASE + "/namespaces/{namespace}/{metric}", _metric)
    app.on_cleanup.append(_close_cache)
    return app


async def _close_cache(app: web.Application) -> None:
    await app[CACHE].close()

