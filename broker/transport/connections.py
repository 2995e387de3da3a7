"""Connections: a limit on how many are served, and read timeouts for heads and bodies.

aiohttp serves every connection it accepts and waits for a request head or body
as long as the client likes, so slow sockets used to pile up until the process
ran out of file descriptors and even /healthz went unanswered (issue 21). Here:

- at most `limit` connections are served; one over the limit gets a short
  answer and is closed: the health checks are answered truthfully (a probe must
  never fail because clients are many), anything else gets 503 with
  Retry-After and a clear error;
- the request head must arrive within the head timeout of connecting or of the
  previous response (aiohttp's keep-alive timer, which also closes idle
  keep-alive connections then);
- a body that stops arriving for the body timeout gets 408 and is closed
  (`BodyWatch`, started by the admission middleware).
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable
from typing import cast

import orjson
from aiohttp import web

from ferry.broker.models import ErrorCode
from ferry.broker.transport.errors import error_body, retry_after_s

MAX_CONNECTIONS = 1000  # --max-connections
HEADER_TIMEOUT_S = 20.0  # --header-timeout-seconds (aiohttp's client keeps idle ones 15 s)
OVER_LIMIT_TIMEOUT_S = 2.0  # a refused connection gets this long to send its request head
MAX_HEAD_BYTES = 8192
FD_RESERVE = 256  # descriptors kept for the store, pipes and refused connections

# path -> (status, JSON document): the health checks, answered even over the limit.
Health = Callable[[str], tuple[int, dict[str, object]] | None]


def http_response(status: int, reason: str, body: bytes, extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n").encode() + body


class Refused(asyncio.Protocol):
    """A connection over the limit: one short answer, then closed."""

    def __init__(self, health: Health, limit: int) -> None:
        self.health = health
        self.limit = limit
        self.head = bytearray()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.timer = asyncio.get_running_loop().call_later(
            OVER_LIMIT_TIMEOUT_S, self.transport.close)

    def data_received(self, data: bytes) -> None:
        self.head += data
        if b"\r\n\r\n" in self.head or len(self.head) > MAX_HEAD_BYTES:
            self.answer()

    def answer(self) -> None:
        assert self.transport is not None
        line = bytes(self.head.split(b"\r\n", 1)[0]).decode("latin-1").split(" ")
        found = self.health(line[1].split("?")[0]) if len(line) == 3 and line[0] == "GET" \
            else None
        if found is not None:
            status, doc = found
            reply = http_response(status, "OK" if status == 200 else "Service Unavailable",
                                  orjson.dumps(doc))
        else:
            body = error_body(ErrorCode.UNAVAILABLE,
                              f"the broker serves at most {self.limit} connections; retry")
            reply = http_response(503, "Service Unavailable", body,
                                  f"Retry-After: {retry_after_s(ErrorCode.UNAVAILABLE)}\r\n")
        self.transport.write(reply)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()


class Limited:
    """Protocol factory: aiohttp's server below the limit, `Refused` above it."""

    def __init__(self, server: web.Server, limit: int, health: Health) -> None:
        self.server, self.limit, self.health = server, limit, health
        self.refused = 0

    def __call__(self) -> asyncio.BaseProtocol:
        if len(self.server.connections) >= self.limit:
            self.refused += 1
            return Refused(self.health, self.limit)
        return self.server()


def usable_connections(wanted: int) -> int:
    """Raise the soft descriptor limit as far as allowed; the connections that fit in it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = max(soft, min(hard, wanted + 2 * FD_RESERVE))
        if target != soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return max(1, min(wanted, soft - FD_RESERVE))


class BodyWatch:
    """Answers 408 and closes the connection when a body stops arriving for `seconds`."""

    def __init__(self, request: web.Request, seconds: float) -> None:
        self.request = request
        self.seconds = seconds
        self.seen = -1
        self.fired = False
        self.timer: asyncio.TimerHandle | None = None
        self.check()

    def check(self) -> None:
        content = self.request.content
        if content.is_eof():
            return
        if content.total_bytes == self.seen:
            self.fire()
            return
        self.seen = content.total_bytes
        self.timer = asyncio.get_running_loop().call_later(self.seconds, self.check)

    def fire(self) -> None:
        self.fired = True
        transport = self.request.transport
        if transport is not None and not transport.is_closing():
            body = error_body(ErrorCode.BAD_REQUEST,
                              f"no body bytes for {self.seconds:g} s; the request is dropped")
            transport.write(http_response(408, "Request Timeout", body))
            transport.close()

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
