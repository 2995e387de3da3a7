"""One way to run an aiohttp app: bind (port 0 picks a free one and is reported back),
serve until SIGTERM or SIGINT, then drain in-flight requests and clean up."""

from __future__ import annotations

import asyncio
import gc
import signal
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiohttp import web

DRAIN_SECONDS = 10.0
GC_GEN0_THRESHOLD = 10_000
T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on uvloop (a dependency): its event loop is C, and a busy service spends
    a fifth of its CPU in the loop (the telemetry collector, py-spy: bench/README.md)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - keep working without it
        return asyncio.run(main)
    return uvloop.run(main)


def tune_gc() -> None:
    """Fewer, cheaper collections; call once a service has built its long-lived state.

    Everything built so far (modules, pydantic schemas, the app, clients) is moved out
    of the collector's sight, and the youngest generation collects every 10,000
    allocations instead of 700, so most objects of a request or a batch are freed by
    refcount before a collection ever walks them. Measured (bench/README.md): broker CPU
    per message -13%; the telemetry streamers' CPU per row -10 to -14%.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 10, 10)


def stop_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (Kubernetes sends SIGTERM, a terminal SIGINT)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


# Wraps aiohttp's protocol factory, e.g. to refuse connections over a limit.
Admit = Callable[[web.Server], Callable[[], asyncio.BaseProtocol]]


@asynccontextmanager
async def listening(app: web.Application, host: str, port: int, *,
                    ssl_context: ssl.SSLContext | None = None,
                    drain_seconds: float = DRAIN_SECONDS,
                    backlog: int = 128, keepalive_timeout: float | None = None,
                    admit: Admit | None = None) -> AsyncIterator[int]:
    """Serve `app` inside the block, which receives the bound port (port 0: any free one).

    Leaving the block stops accepting, gives in-flight requests `drain_seconds` to finish
    and runs the app's cleanup. An address in use raises OSError before the block.
    `keepalive_timeout` bounds how long a connection may take to send a request head
    (aiohttp's keep-alive timer); `admit` decides, per accepted connection, who serves it.
    """
    if keepalive_timeout is None:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=drain_seconds)
    else:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=drain_seconds,
                               keepalive_timeout=keepalive_timeout)
    await runner.setup()
    listener: asyncio.Server | None = None
    try:
        if admit is None:
            await web.TCPSite(runner, host, port, ssl_context=ssl_context, backlog=backlog,
                              reuse_address=True).start()
            yield int(runner.addresses[0][1])  # the site's, bound by start()
        else:
            assert runner.server is not None
            listener = await asyncio.get_running_loop().create_server(
                admit(runner.server), host, port, ssl=ssl_context, backlog=backlog,
                reuse_address=True)
            yield int(listener.sockets[0].getsockname()[1])
    finally:
        if listener is not None:
            listener.close()  # stop accepting; the runner drains what it serves
        await runner.cleanup()


async def serve(app: web.Application, host: str, port: int, *,
                started: Callable[[int], None] = lambda _port: None,
                stopping: Callable[[], None] = lambda: None,
                until: Callable[[asyncio.Event], Awaitable[object]] = asyncio.Event.wait,
                ssl_context: ssl.SSLContext | None = None,
                drain_seconds: float = DRAIN_SECONDS, backlog: int = 128,
                keepalive_timeout: float | None = None, admit: Admit | None = None) -> None:
    """Serve until SIGTERM/SIGINT: `started(port)` once listening, `stopping()` before the drain.

    `until(stop)` is what is awaited while serving: by default the signal itself; a
    service that may also have to stop for its own reasons waits for either.
    """
    stop = stop_event()
    async with listening(app, host, port, ssl_context=ssl_context,
                         drain_seconds=drain_seconds, backlog=backlog,
                         keepalive_timeout=keepalive_timeout, admit=admit) as bound:
        started(bound)
        await until(stop)
        stopping()
