"""GET /v1/ws: pipelined publish/ack frames and pushed deliveries on one connection.

The read loop never waits for durability: each frame is applied to the core at
once and its reply is sent when the store has committed it, so a client can
keep many frames in flight and they share group commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass, field

import orjson
from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import TypeAdapter, ValidationError

from ferry.broker.core import CoreError
from ferry.broker.models import (
    ErrorCode,
    WsBrowse,
    WsCancel,
    WsFrame,
    WsPublish,
    WsPurge,
    WsRequest,
    WsSettle,
    WsSubscribe,
    WsUnsubscribe,
)
from ferry.broker.store import StoreError
from ferry.broker.transport.browsing import browse_page, cancel_now, purge
from ferry.broker.transport.encoding import bracketed
from ferry.broker.transport.errors import ApiError, describe, retry_after_s, store_error
from ferry.broker.transport.leases import LeaseBook
from ferry.broker.transport.limits import MAX_REQUEST_BYTES
from ferry.broker.transport.messaging import (
    ids_json,
    incoming,
    publish_span,
    settle_now,
    settled_json,
)
from ferry.broker.transport.rights import check_frame, grant_of
from ferry.broker.transport.runtime import RUNTIME, Runtime
from ferry.broker.transport.streaming import push_ready, wait_for_room_or_messages
from ferry.broker.transport.tokens import Grant

log = logging.getLogger("ferry.broker.transport")
routes = web.RouteTableDef()
SOCKETS = web.AppKey("websockets", set[web.WebSocketResponse])

_REQUEST: TypeAdapter[WsFrame] = TypeAdapter(WsRequest)
KEEPALIVE_S = 15.0


def reply(seq: int, field_: bytes, value: bytes) -> bytes:
    return b'{"op":"reply","seq":%d,"%s":%s}' % (seq, field_, value)


def error_reply(seq: int, code: ErrorCode, message: str, retry_after: int | None = None
                ) -> bytes:
    """A frame's error reply. Where HTTP would answer Retry-After, it carries the same
    figure in milliseconds (retry_after_ms): `retry_after` (a refusal's own seconds),
    else the code's (errors.retry_after_s)."""
    error: dict[str, str | int] = {"code": code.value, "message": message}
    wait = retry_after_s(code, retry_after)
    if wait is not None:
        error["retry_after_ms"] = wait * 1000
    return b'{"op":"reply","seq":%d,"error":%s}' % (seq, orjson.dumps(error))


def refusal_reply(seq: int, e: ApiError | CoreError) -> bytes:
    """The error reply of a refused frame, with an ApiError's own wait (a token's rate)."""
    return error_reply(seq, e.code, e.message,
                       e.retry_after if isinstance(e, ApiError) else None)


@dataclass
class Subscription:
    seq: int
    frame: WsSubscribe
    book: LeaseBook
    task: asyncio.Task[None] | None = None
    # Set by unsubscribe: push nothing more, keep the leases pushed.
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: bool = False  # the push loop holds no lease in hand (safe to cancel)


class Connection:
    def __init__(self, rt: Runtime, ws: web.WebSocketResponse, grant: Grant | None = None
                 ) -> None:
        self.rt = rt
        self.ws = ws
        self.grant = grant  # the handshake's token: each frame is checked against it
        # Frames to send, each with the memory it holds until sent (a pushed batch).
        self.outbox: asyncio.Queue[tuple[bytes, int] | None] = asyncio.Queue()
        self.subs: dict[int, Subscription] = {}
        self.closed = False
        # Pushed batches not yet written: a subscription waits for the client to read the
        # last one before leasing more, so a client that stops reading holds one batch.
        self.unsent_pushes = 0
        self.pushes_sent = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()  # browse and purge frames awaiting the store

    def send(self, frame: bytes, held: int = 0) -> None:
        if self.closed:
            self.rt.memory.release(held)
        else:
            self.outbox.put_nowait((frame, held))

    async def _write(self) -> None:
        ws, memory = self.ws, self.rt.memory
        try:
            while (item := await self.outbox.get()) is not None:
                frame, held = item
                try:
                    await ws.send_frame(frame, WSMsgType.TEXT)
                finally:
                    memory.release(held)
                    if held:
                        self.unsent_pushes -= 1
                        self.pushes_sent.set()
        finally:  # the connection went: what was never sent holds nothing any more
            while not self.outbox.empty():
                item = self.outbox.get_nowait()
                if item is not None:
                    memory.release(item[1])

    async def run(self) -> None:
        writer = asyncio.create_task(self._write(), name="ferry-ws-writer")
        try:
            async for msg in self.ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                # A frame holds its size of the memory budget until its reply (durable).
                size = len(msg.data)
                if not self.rt.memory.try_take(size):
                    self.send(error_reply(_seq_of(msg.data), ErrorCode.UNAVAILABLE,
                                          "the broker's memory budget is taken; retry"))
                    continue
                frame = self.parse(msg.data)
                if frame is None:
                    self.rt.memory.release(size)
                    continue
                if isinstance(frame, WsPublish) and not self.rt.dedup_loaded.is_set():
                    await self.rt.dedup_loaded.wait()  # right after a restart only
                self.dispatch(frame, size)
                del msg, frame  # not kept while waiting for the next frame (memory)
                if self.rt.draining:
                    break
        finally:
            self.closed = True
            await self._end_subscriptions()
            self.outbox.put_nowait(None)
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer
            if not writer.done():
                writer.cancel()

    # --- frames --------------------------------------------------------------

    def parse(self, data: str | bytes) -> WsFrame | None:
        try:
            return _REQUEST.validate_json(data, strict=True)
        except ValidationError as e:
            self.send(error_reply(_seq_of(data), _error_code(e), describe(e)))
            return None

    def dispatch(self, frame: WsFrame, held: int = 0) -> None:
        fut: asyncio.Future[None] | None = None
        try:
            check_frame(self.rt, self.grant, frame)
            if isinstance(frame, WsPublish):
                fut = self._publish(frame)
            elif isinstance(frame, WsSettle):
                fut = self._settle(frame)
            elif isinstance(frame, WsCancel):
                fut = cancel_now(self.rt, frame.queue, frame.id)
                self._after(fut, frame.seq, reply(frame.seq, b"cancelled", orjson.dumps(frame.id)))
            elif isinstance(frame, WsBrowse | WsPurge):  # awaits the store: a task each
                task = asyncio.create_task(self._answer(frame), name=f"ferry-ws-{frame.op}")
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            elif isinstance(frame, WsUnsubscribe):
                self._unsubscribe(frame)
            else:
                self._subscribe(frame)
        except (ApiError, CoreError) as e:
            self.send(refusal_reply(frame.seq, e))
        except Exception as e:  # a bug: answer this frame, keep the connection and its replies
            log.exception("unexpected error in websocket frame %s", frame.op)
            self.send(error_reply(
                frame.seq, ErrorCode.UNAVAILABLE,
                f"internal error ({type(e).__name__}); see the broker log",
            ))
        finally:
            memory = self.rt.memory
            if fut is None:
                memory.release(held)
            else:
                fut.add_done_callback(lambda _: memory.release(held))

    def _publish(self, f: WsPublish) -> asyncio.Future[None] | None:
        q = self.rt.core.queue(f.queue)
        with publish_span(f.queue, len(f.messages), f.traceparent):
            ids, fut = self.rt.publish_nowait(q, incoming(q, f.messages, f.traceparent))
        answer = reply(f.seq, b"ids", b"[" + ids_json(ids)[8:-2] + b"]")
        self._after(fut, f.seq, answer)
        return fut

    def _settle(self, f: WsSettle) -> asyncio.Future[None] | None:
        statuses, fut = settle_now(self.rt, f.op, f.queue, f.group, f.receipts, f.delay_ms,
                                   f.visibility_timeout_ms)
        self._after(fut, f.seq, reply(f.seq, b"results", settled_json(f.receipts, statuses)))
        return fut

    async def _answer(self, f: WsBrowse | WsPurge) -> None:
        try:
            if isinstance(f, WsPurge):
                n = await purge(self.rt, f.queue, f.group)
                self.send(reply(f.seq, b"purged", b"%d" % n))
                return
            page = await browse_page(self.rt, f.queue, f)  # a WsBrowse is a BrowseQuery
            self.send(reply(f.seq, b"page", orjson.dumps(page.model_dump(mode="json"))))
        except (ApiError, CoreError) as e:
            self.send(refusal_reply(f.seq, e))
        except StoreError as e:
            self.send(error_reply(f.seq, *store_error(e)))

    def _after(self, fut: asyncio.Future[None] | None, seq: int, answer: bytes) -> None:
        if fut is None:
            self.send(answer)
        else:
            fut.add_done_callback(functools.partial(self._durable, seq, answer))

    def _durable(self, seq: int, answer: bytes, fut: asyncio.Future[None]) -> None:
        if fut.cancelled():
            return
        e = fut.exception()
        if e is None:
            self.send(answer)
        elif isinstance(e, StoreError):
            self.send(error_reply(seq, *store_error(e)))
        else:
            self.send(error_reply(seq, ErrorCode.UNAVAILABLE, f"the store could not commit: {e}"))

    def _subscribe(self, f: WsSubscribe) -> None:
        self.rt.core.group(f.queue, f.group)
        if f.seq in self.subs:
            raise ApiError(ErrorCode.CONFLICT, f"subscription {f.seq} exists on this connection")
        sub = Subscription(f.seq, f, LeaseBook(self.rt, f.queue, f.group, f.max_in_flight))
        self.subs[f.seq] = sub
        self.send(b'{"op":"reply","seq":%d}' % f.seq)
        sub.task = asyncio.create_task(self._push(sub), name=f"ferry-ws-sub-{f.seq}")

    def _unsubscribe(self, f: WsUnsubscribe) -> None:
        """Stop the push loop of subscription f.sub, then reply: the reply follows its last
        deliver frame, so the client knows it holds every lease it will get. The leases stay
        in the subscription's book, handed back only if the connection goes."""
        sub = self.subs.get(f.sub)
        if sub is None:
            raise ApiError(ErrorCode.BAD_REQUEST, f"no subscription {f.sub} on this connection")
        sub.stopped.set()
        answer = b'{"op":"reply","seq":%d}' % f.seq
        task = sub.task
        if task is None or task.done():
            self.send(answer)
            return
        if sub.waiting:  # waiting for room or messages: nothing leased is in hand
            task.cancel()
        task.add_done_callback(lambda _: self.send(answer))

    async def _push(self, sub: Subscription) -> None:
        f, rt = sub.frame, self.rt
        head = b'{"op":"deliver","sub":%d,"messages":[' % sub.seq
        try:
            while not self.closed and not rt.draining and not sub.stopped.is_set():
                sub.waiting = True
                while self.unsent_pushes:
                    self.pushes_sent.clear()
                    await self.pushes_sent.wait()
                sub.waiting = False
                # Not cancelled from here to the send: what push_ready leases is sent.
                pushed = await push_ready(
                    rt, f.queue, f.group, f.consumer, f.max_in_flight, f.visibility_timeout_ms
                )
                if pushed:
                    sub.book.remember(pushed.leased)
                    self.unsent_pushes += 1
                    self.send(bracketed(head, pushed.parts), held=pushed.held)
                    continue
                if sub.stopped.is_set():  # unsubscribed while leasing
                    break
                sub.waiting = True
                await wait_for_room_or_messages(rt, f.queue, f.group, f.consumer, KEEPALIVE_S)
                sub.waiting = False
        except CoreError as e:  # the queue or group was deleted
            self.send(error_reply(sub.seq, e.code, e.message))

    async def _end_subscriptions(self) -> None:
        for task in list(self.tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sub in self.subs.values():
            if sub.task is not None:
                sub.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sub.task
            sub.book.hand_back()
        self.rt.flush(wait=False)


def _error_code(e: ValidationError) -> ErrorCode:
    """invalid_name when only names are wrong: the code a bad name in an HTTP path gets."""
    names = all(
        err["type"] == "string_pattern_mismatch" and err["loc"][-1] in ("queue", "group")
        for err in e.errors()
    )
    return ErrorCode.INVALID_NAME if names else ErrorCode.BAD_REQUEST


def _seq_of(data: str | bytes) -> int:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return 0
    seq = doc.get("seq") if isinstance(doc, dict) else None
    return seq if isinstance(seq, int) else 0


@routes.get("/v1/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    rt = request.app[RUNTIME]
    ws = web.WebSocketResponse(
        max_msg_size=MAX_REQUEST_BYTES, heartbeat=30.0, decode_text=False, compress=False
    )
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    try:
        await Connection(rt, ws, grant_of(request)).run()
    except StoreError:  # pragma: no cover - replies carry store errors; nothing to add
        log.exception("websocket store failure")
    finally:
        request.app[SOCKETS].discard(ws)
    return ws


async def close_sockets(app: web.Application) -> None:
    """On shutdown: close every WebSocket (1001 going away) instead of waiting out the drain.

    A WebSocket never finishes by itself, so the drain used to wait its whole time for
    each one and then some; closing hands its leases back and flushes its replies.
    """
    sockets: set[web.WebSocketResponse] = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"broker shutting down")


def install(app: web.Application) -> None:
    app[SOCKETS] = set()
    app.on_shutdown.append(close_sockets)
    app.add_routes(routes)
