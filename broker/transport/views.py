"""Core state -> wire models (stats), and path/query parsing shared by the routes."""

from __future__ import annotations

import orjson
from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from ferry.broker.core import Group, Queue
from ferry.broker.models import (
    CONSUMER_PATTERN,
    ConsumerInfo,
    ConsumerName,
    ErrorCode,
    GroupStats,
    Name,
    QueueStats,
)
from ferry.broker.transport.errors import ApiError
from ferry.broker.transport.limits import MAX_REQUEST_BYTES

# The same validators as the request models' name fields (pydantic's regex engine,
# where `$` is the end of the text): a name is refused the same way in a path and in
# a WebSocket frame, trailing newline included.
_NAME: TypeAdapter[str] = TypeAdapter(Name)
_CONSUMER: TypeAdapter[str] = TypeAdapter(ConsumerName)


def name_param(request: web.Request, part: str) -> str:
    value = request.match_info[part]
    try:
        return _NAME.validate_python(value)
    except ValidationError:
        raise ApiError(
            ErrorCode.INVALID_NAME,
            f"{part} name {value!r} must be a lowercase DNS label (a-z, 0-9, '-', <= 63 chars)",
        ) from None


def consumer_name(value: str) -> str:
    try:
        return _CONSUMER.validate_python(value)
    except ValidationError:
        raise ApiError(
            ErrorCode.BAD_REQUEST,
            f"consumer {value!r} must match {CONSUMER_PATTERN}",
        ) from None


def int_query(request: web.Request, key: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(ErrorCode.BAD_REQUEST, f"{key} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ApiError(ErrorCode.BAD_REQUEST, f"{key} must be between {low} and {high}")
    return value


async def read_body(request: web.Request) -> bytes:
    """The body, or `{}` when there is none: only no bytes at all count as no body.

    A body of whitespace is not JSON and is refused like any other (it once passed for
    an absent body, so `PUT` with a body of "\\n" created a queue with default settings).
    """
    return await request.read() or b"{}"


async def read_once(request: web.Request) -> bytearray:
    """The body, not kept by the request (request.read() keeps its copy to the end).

    A publish of the largest messages holds its body, the parsed bodies and the
    documents; reading it this way frees the raw body once parsed.
    """
    body = bytearray()
    while chunk := await request.content.readany():
        body += chunk
        if len(body) > MAX_REQUEST_BYTES:
            raise ApiError(ErrorCode.PAYLOAD_TOO_LARGE,
                           f"the body is over {MAX_REQUEST_BYTES} bytes")
    return body


def json_response(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(model.model_dump(mode="json")), status=status,
        content_type="application/json",
    )


def raw_json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


def group_stats(g: Group, now: int) -> GroupStats:
    f = g.figures(now)
    return GroupStats(
        queue=g.queue.name, group=g.name, settings=g.settings, depth=f.depth,
        in_flight=f.in_flight, delayed=f.delayed, dead=f.dead,
        lag=f.depth + f.in_flight + f.delayed, backlog=f.depth + f.in_flight,
        oldest_ready_age_ms=f.oldest_ready_age_ms,
        acked_total=g.acked_total,
        filtered_total=g.filtered_total,
        consumers=[
            ConsumerInfo(name=name, last_seen_ms=c.last_seen, in_flight=c.in_flight)
            for name, c in sorted(g.leases.consumers.items())
        ],
        restoring=g.queue.loading,
    )


def queue_stats(q: Queue, now: int) -> QueueStats:
    return QueueStats(
        queue=q.name, settings=q.settings, messages=q.live, published_total=q.published_total,
        groups=[group_stats(g, now) for _, g in sorted(q.groups.items())],
        restoring=q.loading,
    )
