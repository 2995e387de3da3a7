"""The aiohttp application: routes, middlewares and the background clock."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict

from aiohttp import web

from ferry.broker.core import Broker
from ferry.broker.models import ErrorCode
from ferry.broker.store import Engine, Leader, Store
from ferry.broker.store.postgres import PgStore
from ferry.broker.transport import (
    admin,
    browsing,
    console,
    messaging,
    metrics,
    openapi,
    socket_api,
    streaming,
    watching,
)
from ferry.broker.transport.admission import memory_middleware
from ferry.broker.transport.auth import auth_middleware
from ferry.broker.transport.errors import Handler, error_response, errors_middleware
from ferry.broker.transport.limits import MAX_REQUEST_BYTES
from ferry.broker.transport.runtime import RUNTIME, Role, Runtime, now_ms, queue_key
from ferry.kit import health as kit_health

log = logging.getLogger("ferry.broker")

TICK_S = 0.05  # lease expiry and retry resolution
COMPACT_EVERY = 20  # ticks: retention, dedup window, freeing acked messages

probes = web.RouteTableDef()


def liveness(rt: Runtime) -> str | None:
    """The liveness problem (None: alive). Failing: starting over, not alive as it is."""
    return None if rt.failure is None else f"failing: {rt.failure}"


@probes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return kit_health.health(liveness(request.app[RUNTIME]))


def readiness(rt: Runtime, leader: Leader | None) -> tuple[str | None, dict[str, object]]:
    """The readiness problem (None: ready) and its details."""
    role: dict[str, object] = {"role": rt.role.value, "engine": rt.store.name,
                               "leader": None if leader is None else asdict(leader)}
    if rt.failure is not None:
        return f"failing: {rt.failure}", role
    if rt.role is Role.STANDBY:
        return "standby: the leader serves the queues", role
    if rt.draining:
        return "draining", role
    # Serving already while a restart still reads stored messages in (oldest first).
    return None, {**role, "restoring": not rt.loaded.is_set()}


@probes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    leader = await rt.store.leader()  # who leads the queue set (None: the embedded engine)
    problem, details = readiness(rt, leader)
    return kit_health.health(problem, **details)


def health_check(rt: Runtime) -> Callable[[str], tuple[int, dict[str, object]] | None]:
    """The probes' answers by path (None: not a probe), for connections over the limit.

    There is no time to ask the store who leads there, so /readyz says nothing of it.
    """

    def answer(path: str) -> tuple[int, dict[str, object]] | None:
        if path == "/healthz":
            return kit_health.health_doc(liveness(rt))
        if path == "/readyz":
            problem, details = readiness(rt, None)
            details.pop("leader")
            return kit_health.health_doc(problem, **details)
        return None

    return answer


# What a standby answers besides its health: nothing of the queues (it has none loaded).
_STANDBY_OPEN = frozenset({"/healthz", "/readyz", "/metrics"})


@web.middleware
async def standby_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    if rt.role is Role.STANDBY and request.path not in _STANDBY_OPEN:
        return error_response(
            ErrorCode.UNAVAILABLE, "this broker is a standby: the leader serves the queues"
        )
    return await handler(request)


@web.middleware
async def failing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Once failing, say nothing the store may not hold: 503 for all but health and metrics."""
    rt = request.app[RUNTIME]
    if rt.failure is None or request.path in _STANDBY_OPEN:
        return await handler(request)
    return error_response(
        ErrorCode.UNAVAILABLE, f"the broker is starting over after a failure: {rt.failure}"
    )


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


RESTORE_TASK = "ferry-broker-restore"


def _fatal(rt: Runtime, task: asyncio.Task[None]) -> None:
    """A background task must run as long as the broker does: its end is a failure."""
    if task.cancelled():
        return
    e = task.exception()
    if e is not None:
        log.error("%s failed", task.get_name(), exc_info=e)
        rt.fail(f"{task.get_name()} failed: {type(e).__name__}: {e}")
    elif task.get_name() != RESTORE_TASK:  # restoring ends; the clock never does
        rt.fail(f"{task.get_name()} ended")


async def _background(app: web.Application) -> AsyncIterator[None]:
    rt = app[RUNTIME]
    tasks = [
        asyncio.create_task(_clock(rt), name="ferry-broker-clock"),
        asyncio.create_task(rt.restore_messages(), name=RESTORE_TASK),
    ]
    for task in tasks:
        task.add_done_callback(functools.partial(_fatal, rt))
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)  # a failure was logged by _fatal
    if rt.failure is None:
        rt.flush(wait=False)


def build_app(rt: Runtime) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[RUNTIME] = rt
    metrics.install(app, rt)  # outermost middleware: sees every final status
    app.middlewares.extend(
        [errors_middleware, standby_middleware, auth_middleware, failing_middleware,
         memory_middleware]
    )
    for table in (probes, admin.routes, messaging.routes, browsing.routes, streaming.routes):
        app.add_routes(table)
    watching.install(app)
    console.install(app)
    socket_api.install(app)
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


def standby_runtime(store: Engine) -> Runtime:
    """A runtime that serves health only until it is elected (Runtime.restore_messages)."""
    return Runtime(core=Broker(now_ms()), store=store, role=Role.STANDBY)


def open_postgres(dsn: str, schema: str, holder: str) -> Runtime:
    return standby_runtime(PgStore(dsn, schema, holder))
