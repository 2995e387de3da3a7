"""The aiohttp application: routes are thin (validate with pydantic, ask the store, answer)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version

from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ValidationError

from ferry.kit.health import health_handler, metrics_handler, request_metrics
from ferry.telemetry.api import paging
from ferry.telemetry.api.models import (
    ErrorBody,
    ErrorCode,
    ErrorDetail,
    Gpu,
    GpuList,
    TelemetryPage,
    TelemetryParams,
    TelemetryPoint,
)
from ferry.telemetry.api.openapi import document
from ferry.telemetry.parsing.rows import describe
from ferry.telemetry.storage.base import StorageError, Store
from ferry.telemetry.storage.records import Position, SampleQuery

log = logging.getLogger("ferry.telemetry.api")

STORE = web.AppKey("store", Store)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        text=model.model_dump_json(), status=status, content_type="application/json"
    )


def _error(status: int, code: ErrorCode, message: str) -> web.Response:
    return _json(ErrorBody(error=ErrorDetail(code=code, message=message)), status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as {"error": {"code", "message"}}, never an HTML page."""
    try:
        return await handler(request)
    except ApiError as e:
        return _error(e.status, e.code, e.message)
    except StorageError as e:
        log.warning("storage unavailable", extra={"error": str(e)})
        return _error(503, ErrorCode.UNAVAILABLE, "telemetry storage is unavailable")
    except web.HTTPMethodNotAllowed as e:
        return _error(
            405,
            ErrorCode.METHOD_NOT_ALLOWED,
            f"{request.method} is not allowed here"
            + f"; allowed: {', '.join(sorted(e.allowed_methods))}",
        )
    except web.HTTPNotFound:
        return _error(404, ErrorCode.NOT_FOUND, f"no route {request.path}")


async def list_gpus(request: web.Request) -> web.Response:
    gpus = await request.app[STORE].gpus()
    return _json(GpuList(gpus=[Gpu.model_validate(g.model_dump()) for g in gpus]))


def _params(request: web.Request) -> TelemetryParams:
    repeated = sorted({k for k in request.query if len(request.query.getall(k)) > 1})
    if repeated:
        msg = f"parameter(s) given more than once: {', '.join(repeated)}"
        raise ApiError(400, ErrorCode.INVALID_PARAMETER, msg)
    try:
        return TelemetryParams.model_validate(dict(request.query))
    except ValidationError as e:
        raise ApiError(400, ErrorCode.INVALID_PARAMETER, describe(e)) from e


async def gpu_telemetry(request: web.Request) -> web.Response:
    uuid = request.match_info["uuid"]
    params = _params(request)
    try:
        after = paging.decode(params.cursor) if params.cursor else None
    except paging.CursorError as e:
        raise ApiError(400, ErrorCode.INVALID_CURSOR, str(e)) from e
    store = request.app[STORE]
    if await store.gpu(uuid) is None:
        raise ApiError(404, ErrorCode.GPU_NOT_FOUND, f"no telemetry stored for GPU {uuid}")
    query = SampleQuery(
        gpu_uuid=uuid,
        metric=params.metric,
        start=params.start_time,
        end=params.end_time,
        limit=params.limit + 1,
        after=after,
    )
    found = await store.samples(query)
    page = found[: params.limit]
    more = len(found) > params.limit
    items = [
        TelemetryPoint(
            timestamp=s.row.timestamp,
            metric_name=s.row.metric_name,
            value=s.row.value,
            hostname=s.row.hostname,
            container=s.row.container,
            pod=s.row.pod,
            namespace=s.row.namespace,
            labels_raw=s.row.labels_raw,
        )
        for s in page
    ]
    cursor = None
    if more:
        cursor = paging.encode(Position(ts_us=page[-1].row.ts_us, row_id=page[-1].row_id))
    return _json(TelemetryPage(gpu_uuid=uuid, items=items, next_cursor=cursor))


def _version() -> str:
    try:
        return version("ferry")
    except PackageNotFoundError:
        return "0.0.0"


def create_app(store: Store, *, own_store: bool = True) -> web.Application:
    """The API over `store`; with own_store the app opens and closes it."""
    registry = CollectorRegistry()
    app = web.Application(middlewares=[request_metrics(registry, "ferry_api"), errors])
    app[STORE] = store
    openapi = document(_version())

    async def openapi_json(_: web.Request) -> web.Response:
        return web.json_response(openapi)

    async def check() -> str | None:
        try:
            await store.ping()
        except StorageError as e:
            return str(e)
        return None

    if own_store:

        async def lifecycle(_: web.Application) -> AsyncIterator[None]:
            await store.open()
            yield
            await store.close()

        app.cleanup_ctx.append(lifecycle)

    app.router.add_get("/api/v1/gpus", list_gpus)
    app.router.add_get("/api/v1/gpus/{uuid}/telemetry", gpu_telemetry)
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/healthz", health_handler(check))
    app.router.add_get("/metrics", metrics_handler(registry))
    return app
