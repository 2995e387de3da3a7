"""Publish, receive, settle (ack/nack/extend), dead letters, one message and its priority.

Browsing, cancelling and purging are in `browsing`."""

from __future__ import annotations

import asyncio
import json
from contextlib import AbstractContextManager as ContextManager
from typing import Any

import orjson
from aiohttp import web

from ferry.broker.core import DeadEntry, Incoming, MessageNotFoundError, Queue, rowid
from ferry.broker.models import (
    PAGE_MAX,
    DeadLetter,
    DeadList,
    ErrorCode,
    ExtendRequest,
    MessageGroupInfo,
    MessageInfo,
    NackRequest,
    OutgoingMessage,
    PriorityChange,
    PublishRequest,
    ReceiptsRequest,
    ReceiptStatus,
    ReceiveRequest,
    RedriveRequest,
    RedriveResponse,
    parse,
)
from ferry.broker.transport.encoding import (
    encode_delivery,
    encode_doc,
    encode_list,
    headers_json,
)
from ferry.broker.transport.errors import ApiError
from ferry.broker.transport.limits import CURSOR
from ferry.broker.transport.runtime import (
    RUNTIME,
    TRACER,
    Runtime,
    durable,
    flow_key,
    now_ms,
    queue_key,
)
from ferry.broker.transport.views import (
    int_query,
    json_response,
    name_param,
    raw_json,
    read_body,
    read_once,
)
from ferry.kit.tracing import TRACEPARENT, span, tracer, valid_traceparent

routes = web.RouteTableDef()


def incoming(
    q: Queue, messages: list[OutgoingMessage], traceparent: str | None = None
) -> list[Incoming]:
    """Validate sizes and encode documents before anything touches the core.

    A message's size is its body's JSON plus its headers' JSON (what the broker
    stores and delivers besides the few fixed fields); the publish's traceparent
    joins the headers of each message that has none of its own.
    """
    limit = q.settings.max_message_bytes
    items = []
    for i, m in enumerate(messages):
        body = _body_json(i, m)
        given = m.headers
        if traceparent is not None and TRACEPARENT not in given:
            given = {**given, TRACEPARENT: traceparent}
        try:
            headers = headers_json(given)  # dumped once: for the size and the document
            size = len(body) + len(headers)
            if size > limit:
                raise ApiError(
                    ErrorCode.MESSAGE_TOO_LARGE,
                    f"messages[{i}] (body and headers) is {size} bytes; "
                    f"queue {q.name!r} allows {limit}",
                )
            doc = encode_doc(m.key, m.priority, headers, body)
        except orjson.JSONEncodeError as e:  # a lone surrogate in the key or a header
            raise ApiError(ErrorCode.BAD_REQUEST, f"messages[{i}]: {e}") from None
        items.append(Incoming(m.priority, m.delay_ms, m.key, m.dedup_id, doc, given))
    return items


def _body_json(i: int, m: OutgoingMessage) -> bytes:
    """The body as stored: refused if JSON cannot carry it as sent."""
    try:
        body = orjson.dumps(m.body)
    except orjson.JSONEncodeError as e:  # an integer beyond 64 bits, a lone surrogate
        raise ApiError(ErrorCode.BAD_REQUEST, f"messages[{i}].body: {e}") from None
    # orjson writes NaN and +-Infinity (1e400 parses as Infinity) as null: look closer
    # only when a null came out. A string body holds no number, and skips the search
    # (CPython's substring search cost ~3 µs of CPU per 4 KiB body: bench/README.md).
    if not isinstance(m.body, str) and b"null" in body:
        try:
            json.dumps(m.body, allow_nan=False)
        except ValueError:
            raise ApiError(
                ErrorCode.BAD_REQUEST,
                f"messages[{i}].body: NaN and Infinity (or numbers beyond a double) "
                "are not JSON",
            ) from None
    return body


def ids_json(ids: list[int]) -> bytes:
    return b'{"ids":[' + b",".join(b'"%d"' % i for i in ids) + b"]}"


def request_traceparent(request: web.Request) -> str | None:
    """The publish's W3C traceparent header, if any: a malformed one is a 400."""
    value = request.headers.get(TRACEPARENT)
    if value is not None and not valid_traceparent(value):
        raise ApiError(ErrorCode.BAD_REQUEST,
                       f"traceparent {value[:64]!r} is not W3C trace context (version 00: "
                       "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>, not all zeros)")
    return value


def publish_span(queue: str, n: int, traceparent: str | None) -> ContextManager[object]:
    """The broker's span of one publish, a child of the producer's (nothing without an SDK)."""
    return span(tracer(TRACER), f"{queue} publish", "server", parent=traceparent,
                attributes={"messaging.system": "ferry", "messaging.destination.name": queue,
                            "messaging.batch.message_count": n})


@routes.post("/v1/queues/{queue}/messages")
async def publish(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    name = name_param(request, "queue")
    traceparent = request_traceparent(request)
    req = parse(PublishRequest, await read_once(request))
    q = rt.core.queue(name)
    with publish_span(name, len(req.messages), traceparent):
        items = incoming(q, req.messages, traceparent)
        del req  # the parsed bodies: only the documents are kept from here on (memory)
        ids = await rt.publish(q, items)
    return raw_json(ids_json(ids))


async def receive_leased(
    rt: Runtime, queue: str, group: str, req: ReceiveRequest
) -> tuple[Queue, list[bytes]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + req.wait_ms / 1000
    while True:
        q = rt.core.queue(queue)
        leased = rt.core.receive(
            queue, group, req.consumer, req.max, req.visibility_timeout_ms, now_ms()
        )
        rt.flush(wait=False)
        if leased:
            held = rt.hold_batch(q)
            if not held:  # nothing happened: the leases are undone
                rt.core.unlease(queue, group, leased, now_ms())
                raise ApiError(ErrorCode.UNAVAILABLE, "the broker's memory budget is taken; retry")
            try:
                found = await rt.deliveries(q, group, leased)
                if found:
                    return q, [encode_delivery(rid, doc, m.delivery_count, m.receipt)
                               for rid, doc, m in found]
            finally:
                rt.memory.release(held)
            continue  # every lease was skipped (the group's filter): more may be ready
        left = deadline - loop.time()
        if left <= 0 or rt.draining:
            return q, []
        await rt.signals.wait((queue_key(q.qid),), left)


@routes.post("/v1/queues/{queue}/groups/{group}/receive")
async def receive(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    queue, group = name_param(request, "queue"), name_param(request, "group")
    req = parse(ReceiveRequest, await request.read())
    rt.core.group(queue, group)  # 404 before waiting
    _, parts = await receive_leased(rt, queue, group, req)
    return raw_json(encode_list(b"messages", parts))


def settled_json(receipts: list[str], statuses: list[ReceiptStatus]) -> bytes:
    """The results of a settle, a JSON list (orjson writes a StrEnum as its value: half
    the CPU of reading .value per receipt)."""
    return orjson.dumps([{"receipt": r, "status": s} for r, s in zip(receipts, statuses,
                                                                    strict=True)])


def results_json(receipts: list[str], statuses: list[ReceiptStatus]) -> bytes:
    return b'{"results":%b}' % settled_json(receipts, statuses)


def settle_now(
    rt: Runtime, op: str, queue: str, group: str, receipts: list[str],
    delay_ms: int | None = None, vt_ms: int | None = None,
) -> tuple[list[ReceiptStatus], asyncio.Future[None] | None]:
    """Ack, nack or extend in the core now, for HTTP and WebSocket alike; the future
    resolves once the store has it (None: nothing to store)."""
    now = now_ms()
    core = rt.core
    if op == "ack":
        statuses = core.ack(queue, group, receipts, now)
    elif op == "nack":
        statuses = core.nack(queue, group, receipts, delay_ms, now)
    else:
        if vt_ms is None:
            raise ApiError(ErrorCode.BAD_REQUEST, "extend needs visibility_timeout_ms")
        statuses = core.extend(queue, group, receipts, vt_ms, now)
    fut = rt.flush()
    notify_settled(rt, op, queue, group)
    return statuses, fut


async def settle(
    rt: Runtime, op: str, queue: str, group: str, receipts: list[str],
    delay_ms: int | None = None, vt_ms: int | None = None,
) -> list[ReceiptStatus]:
    statuses, fut = settle_now(rt, op, queue, group, receipts, delay_ms, vt_ms)
    await durable(fut)
    return statuses


def notify_settled(rt: Runtime, op: str, queue: str, group: str) -> None:
    """Wake whoever waits on what a settle changed (ready messages, consumer room)."""
    if op == "extend":
        return
    g = rt.core.queue(queue).groups.get(group)
    if g is None:
        return
    if op == "nack":
        rt.signals.notify(queue_key(g.queue.qid))
    for name in g.leases.consumers:
        rt.signals.notify(flow_key(g.gid, name))


@routes.post("/v1/queues/{queue}/groups/{group}/ack")
async def ack(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    queue, group = name_param(request, "queue"), name_param(request, "group")
    req = parse(ReceiptsRequest, await request.read())
    statuses = await settle(rt, "ack", queue, group, req.receipts)
    return raw_json(results_json(req.receipts, statuses))


@routes.post("/v1/queues/{queue}/groups/{group}/nack")
async def nack(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    queue, group = name_param(request, "queue"), name_param(request, "group")
    req = parse(NackRequest, await request.read())
    statuses = await settle(rt, "nack", queue, group, req.receipts, delay_ms=req.delay_ms)
    return raw_json(results_json(req.receipts, statuses))


@routes.post("/v1/queues/{queue}/groups/{group}/extend")
async def extend(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    queue, group = name_param(request, "queue"), name_param(request, "group")
    req = parse(ExtendRequest, await request.read())
    statuses = await settle(
        rt, "extend", queue, group, req.receipts, vt_ms=req.visibility_timeout_ms
    )
    return raw_json(results_json(req.receipts, statuses))


def _page(request: web.Request) -> tuple[int, int]:
    """limit (1..PAGE_MAX, default 100) and the seq a cursor names (0: from the start)
    of a dead-letter page (browse pages take the same bounds from BrowseQuery)."""
    limit = int_query(request, "limit", 100, 1, PAGE_MAX)
    cursor = request.query.get("cursor")
    if cursor is None:
        return limit, 0
    if not CURSOR.fullmatch(cursor):
        raise ApiError(ErrorCode.BAD_REQUEST, f"cursor {cursor!r} is not valid")
    return limit, int(cursor)


@routes.get("/v1/queues/{queue}/groups/{group}/dead")
async def dead_letters(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    queue, group = name_param(request, "queue"), name_param(request, "group")
    limit, after = _page(request)
    entries, nxt = rt.core.dead_letters(queue, group, limit, after)
    q = rt.core.queue(queue)
    held = rt.hold_batch(q)
    if not held:
        raise ApiError(ErrorCode.UNAVAILABLE, "the broker's memory budget is taken; retry")
    try:
        return await dead_page(rt, q, entries, nxt)
    finally:
        rt.memory.release(held)


async def dead_page(
    rt: Runtime, q: Queue, entries: list[DeadEntry], nxt: int | None
) -> web.Response:
    rids = [rowid(q.qid, e.seq) for e in entries]
    docs, n = await rt.store.bodies.get_within(rids, rt.batch_bytes)
    if n < len(entries):  # the page ends at its byte budget; the next one starts after it
        entries, rids, nxt = entries[:n], rids[:n], entries[n - 1].seq
    out = []
    for rid, e in zip(rids, entries, strict=True):
        doc = docs.get(rid)
        if doc is None:
            continue
        d = orjson.loads(doc)
        out.append(DeadLetter(
            id=str(rid), body=d["body"], key=d["key"], headers=d["headers"],
            delivery_count=e.delivery_count, dead_at_ms=e.dead_at_ms, reason=e.reason,
        ))
    return json_response(DeadList(messages=out, next_cursor=None if nxt is None else str(nxt)))


@routes.post("/v1/queues/{queue}/groups/{group}/dead/redrive")
async def redrive(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    queue, group = name_param(request, "queue"), name_param(request, "group")
    req = parse(RedriveRequest, await read_body(request))
    rt.core.group(queue, group)
    seqs = None
    if req.ids is not None:
        seqs = []
        for mid in req.ids:
            try:
                seqs.append(rt.core.seq_of(queue, mid))
            except MessageNotFoundError:  # an id of another queue: nothing to redrive
                continue
    n = rt.core.redrive(queue, group, seqs)
    q = rt.core.queue(queue)
    await rt.commit()
    rt.signals.notify(queue_key(q.qid))
    return json_response(RedriveResponse(redriven=n))


async def stored_doc(rt: Runtime, q: Queue, seq: int) -> dict[str, Any]:
    rid = rowid(q.qid, seq)
    docs = await rt.store.bodies.get([rid])
    if rid not in docs:
        raise ApiError(ErrorCode.MESSAGE_NOT_FOUND, f"message {rid} is no longer stored")
    doc: dict[str, Any] = orjson.loads(docs[rid])
    return doc


def message_info(rt: Runtime, q: Queue, seq: int, d: dict[str, Any], now: int) -> MessageInfo:
    states = rt.core.message_states(q.name, seq, now)
    return MessageInfo(
        id=str(rowid(q.qid, seq)), queue=q.name, key=d["key"], priority=d["priority"],
        headers=d["headers"], body=d["body"], published_at_ms=q.published_of(seq),
        groups=[MessageGroupInfo(group=n, state=s, delivery_count=c) for n, s, c in states],
    )


def message_json(rt: Runtime, q: Queue, seq: int, d: dict[str, Any]) -> web.Response:
    return json_response(message_info(rt, q, seq, d, now_ms()))


@routes.get("/v1/queues/{queue}/messages/{id}")
async def one_message(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    queue = name_param(request, "queue")
    seq = rt.core.seq_of(queue, request.match_info["id"])
    rt.core.message_states(queue, seq, now_ms())  # 404 before reading the store
    q = rt.core.queue(queue)
    return message_json(rt, q, seq, await stored_doc(rt, q, seq))


@routes.patch("/v1/queues/{queue}/messages/{id}")
async def set_priority(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    queue = name_param(request, "queue")
    req = parse(PriorityChange, await request.read())
    seq = rt.core.seq_of(queue, request.match_info["id"])
    rt.core.message_states(queue, seq, now_ms())
    q = rt.core.queue(queue)
    d = await stored_doc(rt, q, seq)
    d["priority"] = req.priority
    doc = encode_doc(d["key"], req.priority, headers_json(d["headers"]), orjson.dumps(d["body"]))
    rt.core.set_priority(queue, seq, req.priority, doc, now_ms())
    await rt.commit()
    rt.signals.notify(queue_key(q.qid))
    return message_json(rt, q, seq, d)
