"""BrokerClient: every broker call, over HTTP or a pipelined WebSocket, retried and translated."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote

import aiohttp
import orjson
from pydantic import BaseModel, ValidationError

from ferry.broker.client.batching import batches, dedup_prefix, wire_messages, with_dedup_ids
from ferry.broker.client.errors import (
    BrokerError,
    error_from_response,
    retry_after,
    unreachable,
)
from ferry.broker.client.pipe import NoWebSocketError, Pipe
from ferry.broker.client.retrying import RetryPolicy, with_retries
from ferry.broker.models import (
    DeadList,
    Delivery,
    ErrorCode,
    ExtendRequest,
    GroupSettings,
    GroupStats,
    MessageGroupState,
    MessageInfo,
    MessagePage,
    NackRequest,
    OutgoingMessage,
    PriorityChange,
    PublishRequest,
    PublishResponse,
    PurgeResponse,
    QueueList,
    QueueSettings,
    QueueStats,
    ReceiptResult,
    ReceiptsRequest,
    ReceiptsResponse,
    ReceiveRequest,
    ReceiveResponse,
    RedriveRequest,
    RedriveResponse,
    WsSettle,
    parse_answer,
)
from ferry.kit.tracing import TRACEPARENT, current_traceparent, span, tracer

if TYPE_CHECKING:
    from ferry.broker.client.consuming import Consumer, Mode

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
SettleOp = Literal["ack", "nack", "extend"]
# Batches of one publish() call in flight at once: enough to keep the broker's group
# commit full, few enough that a retry after a lost connection stays small.
PUBLISH_WINDOW = 16
_JSON = {"Content-Type": "application/json"}
_SETTLE_BODY: dict[SettleOp, type[ReceiptsRequest]] = {
    "ack": ReceiptsRequest, "nack": NackRequest, "extend": ExtendRequest}
TRACER = "ferry.broker.client"  # the OpenTelemetry tracer of the client's (and Consumer's) spans


class BrokerClient:
    """Async client of one Ferry broker. Use as `async with BrokerClient(url) as client:`.

    Publish (and ack/nack/extend) go over one pipelined WebSocket when the broker offers
    /v1/ws, over HTTP otherwise; every call is retried on connection errors and 5xx with
    backoff, and every failure surfaces as BrokerError (NotFound, Unavailable).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 5,
        websocket: bool = True,
        connector: aiohttp.BaseConnector | None = None,
    ) -> None:
        """`connector`: a connection pool shared with other clients of the same broker (left
        open by close()); by default the client has a pool of its own."""
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.policy = RetryPolicy(retries=retries)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._websocket = websocket
        self._connector = connector
        self._session: aiohttp.ClientSession | None = None
        self._pipe: Pipe | None = None
        self._pipe_lock = asyncio.Lock()
        self._closed = False

    async def __aenter__(self) -> BrokerClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the WebSocket and the HTTP session; safe to call twice."""
        self._closed = True
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            await pipe.close()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # --- admin -----------------------------------------------------------------

    async def put_queue(self, queue: str, settings: QueueSettings | None = None) -> QueueStats:
        body = settings or QueueSettings()
        return await self._request("PUT", _q(queue), body, QueueStats)

    async def delete_queue(self, queue: str) -> None:
        await self._send("DELETE", _q(queue))

    async def list_queues(self) -> list[QueueStats]:
        return (await self._request("GET", "/v1/queues", None, QueueList)).queues

    async def queue_stats(self, queue: str) -> QueueStats:
        return await self._request("GET", _q(queue), None, QueueStats)

    async def put_group(
        self, queue: str, group: str, settings: GroupSettings | None = None
    ) -> GroupStats:
        body = settings or GroupSettings()
        return await self._request("PUT", _g(queue, group), body, GroupStats)

    async def delete_group(self, queue: str, group: str) -> None:
        await self._send("DELETE", _g(queue, group))

    async def group_stats(self, queue: str, group: str, *, wait_ms: int = 0) -> GroupStats:
        """The group's stats; with wait_ms, once it has a backlog or after wait_ms."""
        params = {"wait_ms": str(wait_ms)} if wait_ms else None
        within = self.timeout + wait_ms / 1000  # a long poll may take wait_ms to answer
        return await self._request("GET", _g(queue, group), None, GroupStats, params=params,
                                   within=within)

    async def health(self) -> bool:
        """Whether the broker answers GET /readyz with 2xx now (one attempt, no retries)."""
        try:
            await self._call("GET", "/readyz")
        except BrokerError:
            return False
        return True

    # --- publishing --------------------------------------------------------------

    async def publish(
        self, queue: str, messages: Sequence[OutgoingMessage], *, batch_size: int = 500
    ) -> list[str]:
        """Publish in batches, in order; returns one message id per message.

        Dedup ids are filled in before the first attempt, so a batch retried after a lost
        connection or a broker restart is stored once. Over the WebSocket, batches are
        pipelined: up to PUBLISH_WINDOW in flight at once. Order is kept unless a batch
        has to be retried (it is then stored after the batches that did not fail).
        """
        # The dedup ids are fixed now ({prefix}-{index}) and derived again on every attempt.
        prefix = dedup_prefix()
        split = list(batches(messages, batch_size))
        if not split:
            return []
        # Batches leave in order: over the one WebSocket (opened first, so every batch
        # finds it ready) frames are written in the order the batches acquire the window;
        # over HTTP, parallel connections would race, so batches go one at a time there.
        pipe = await with_retries(self._shared_pipe, self.policy)
        window = asyncio.Semaphore(PUBLISH_WINDOW if pipe is not None else 1)
        with span(tracer(TRACER), f"{queue} publish", "producer",
                  attributes={"messaging.system": "ferry", "messaging.destination.name": queue,
                              "messaging.batch.message_count": len(messages)}):
            # The messages carry this span's context (the broker stores it in their
            # headers); none without an SDK configured.
            traceparent = current_traceparent()

            async def one(start: int, batch: Sequence[OutgoingMessage]) -> list[str]:
                async with window:
                    return await with_retries(
                        lambda: self._publish_once(queue, batch, prefix, start, traceparent),
                        self.policy,
                    )

            if len(split) == 1:  # the common small publish: no task per batch
                return await one(0, split[0])
            parts = await _gather(one(i * batch_size, b) for i, b in enumerate(split))
        return [message_id for part in parts for message_id in part]

    async def _publish_once(
        self, queue: str, batch: Sequence[OutgoingMessage], prefix: str, start: int,
        traceparent: str | None = None,
    ) -> list[str]:
        pipe = await self._shared_pipe()
        if pipe is None:
            stamped = with_dedup_ids(batch, prefix, start)
            body = PublishRequest.model_construct(messages=stamped)
            extra = {TRACEPARENT: traceparent} if traceparent else None
            answer = await self._call("POST", f"{_q(queue)}/messages", body, headers=extra)
            return _parse(PublishResponse, *answer).ids
        seq = pipe.next_seq()
        frame = orjson.dumps({
            "op": "publish", "seq": seq, "queue": queue,
            "messages": wire_messages(batch, prefix, start),
            **({"traceparent": traceparent} if traceparent else {}),
        })
        reply = await pipe.call(seq, frame.decode())
        return _expect(reply.ids, "ids")

    # --- consuming ---------------------------------------------------------------

    async def receive(
        self,
        queue: str,
        group: str,
        consumer: str,
        *,
        max: int = 1,
        wait_ms: int = 0,
        visibility_timeout_ms: int | None = None,
    ) -> list[Delivery]:
        """Lease up to `max` messages, long-polling up to `wait_ms` when none is ready."""
        body = ReceiveRequest.model_construct(
            consumer=consumer, max=max, wait_ms=wait_ms, visibility_timeout_ms=visibility_timeout_ms
        )
        within = self.timeout + wait_ms / 1000  # a long poll may take wait_ms to answer
        path = f"{_g(queue, group)}/receive"
        response = await self._request("POST", path, body, ReceiveResponse, within=within)
        return response.messages

    async def ack(self, queue: str, group: str, receipts: Sequence[str]) -> list[ReceiptResult]:
        return await self.settle("ack", queue, group, receipts)

    async def nack(
        self, queue: str, group: str, receipts: Sequence[str], *, delay_ms: int | None = None
    ) -> list[ReceiptResult]:
        return await self.settle("nack", queue, group, receipts, delay_ms=delay_ms)

    async def extend(
        self, queue: str, group: str, receipts: Sequence[str], *, visibility_timeout_ms: int
    ) -> list[ReceiptResult]:
        return await self.settle(
            "extend", queue, group, receipts, visibility_timeout_ms=visibility_timeout_ms
        )

    async def settle(
        self,
        op: SettleOp,
        queue: str,
        group: str,
        receipts: Sequence[str],
        *,
        delay_ms: int | None = None,
        visibility_timeout_ms: int | None = None,
        pipe: Pipe | None = None,
    ) -> list[ReceiptResult]:
        """ack, nack or extend receipts, over `pipe` (or the shared WebSocket) or HTTP.

        Safe to retry: settling a receipt twice is answered per receipt, never applied twice.
        """
        if not receipts:
            return []
        if op == "extend" and visibility_timeout_ms is None:
            raise ValueError("extend needs visibility_timeout_ms")

        # The same fields over both transports; model_construct leaves out the ones the
        # op's HTTP body lacks.
        fields: dict[str, Any] = {"receipts": list(receipts), "delay_ms": delay_ms,
                                  "visibility_timeout_ms": visibility_timeout_ms}

        async def attempt() -> list[ReceiptResult]:
            via = pipe if pipe is not None and not pipe.closed else await self._shared_pipe()
            if via is not None:
                seq = via.next_seq()
                frame = WsSettle.model_construct(op=op, seq=seq, queue=queue, group=group, **fields)
                reply = await via.call(seq, frame.model_dump_json())
                return _expect(reply.results, "results")
            body = _SETTLE_BODY[op].model_construct(**fields)
            path = f"{_g(queue, group)}/{op}"
            return _parse(ReceiptsResponse, *await self._call("POST", path, body)).results

        with span(tracer(TRACER), f"{queue} {op}", "client",
                  attributes={"messaging.system": "ferry", "messaging.destination.name": queue,
                              "messaging.consumer.group.name": group,
                              "messaging.batch.message_count": len(receipts)}):
            return await with_retries(attempt, self.policy)

    def consumer(
        self,
        queue: str,
        group: str,
        consumer: str,
        *,
        max_in_flight: int = 100,
        mode: Mode = "stream",
        visibility_timeout_ms: int | None = None,
        auto_extend: bool = True,
    ) -> Consumer:
        """A Consumer of (queue, group): iterate it for deliveries, ack them, close it."""
        from ferry.broker.client.consuming import Consumer

        return Consumer(
            self,
            queue,
            group,
            consumer,
            max_in_flight=max_in_flight,
            mode=mode,
            visibility_timeout_ms=visibility_timeout_ms,
            auto_extend=auto_extend,
        )

    # --- dead letters and inspection --------------------------------------------

    async def dead_letters(
        self, queue: str, group: str, *, limit: int = 100, cursor: str | None = None
    ) -> DeadList:
        params = {"limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        path = f"{_g(queue, group)}/dead"
        return await self._request("GET", path, None, DeadList, params=params)

    async def redrive(self, queue: str, group: str, ids: Sequence[str] | None = None) -> int:
        """Move dead letters (all, or the listed ids) back to the group; returns how many."""
        body = RedriveRequest.model_construct(ids=list(ids) if ids is not None else None)
        path = f"{_g(queue, group)}/dead/redrive"
        return (await self._request("POST", path, body, RedriveResponse)).redriven

    async def browse(
        self, queue: str, *, limit: int = 100, cursor: str | None = None,
        group: str | None = None, state: MessageGroupState | str | None = None,
        key: str | None = None, priority: int | None = None,
    ) -> MessagePage:
        """A page of stored messages, oldest first, with their state per group; nothing is
        leased. Filters: `group` (messages it is not done with), `state` in that group,
        `key`, `priority`. A page can be short, even empty, with a next_cursor: go on until
        next_cursor is None (see `browse_all`)."""
        given = {"limit": limit, "cursor": cursor, "group": group, "key": key,
                 "priority": priority, "state": state}
        # Checked by the broker (400 with its reason), as every other argument is.
        params = {k: str(v) for k, v in given.items() if v is not None}
        return await self._request("GET", f"{_q(queue)}/messages", None, MessagePage,
                                   params=params)

    async def browse_all(
        self, queue: str, *, limit: int = 100, group: str | None = None,
        state: MessageGroupState | str | None = None, key: str | None = None,
        priority: int | None = None,
    ) -> AsyncIterator[MessageInfo]:
        """Every stored message matching the filters, page after page."""
        cursor: str | None = None
        while True:
            page = await self.browse(queue, limit=limit, cursor=cursor, group=group,
                                     state=state, key=key, priority=priority)
            for info in page.messages:
                yield info
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel(self, queue: str, id: str) -> None:
        """Remove a stored message for every group (a lease on it can no longer ack)."""
        await self._send("DELETE", f"{_q(queue)}/messages/{quote(id, safe='')}")

    async def purge(self, queue: str, group: str | None = None) -> int:
        """Remove the messages ready now, for one group or every group; returns how many."""
        path = f"{_q(queue)}/purge" if group is None else f"{_g(queue, group)}/purge"
        return (await self._request("POST", path, None, PurgeResponse)).purged

    async def message(self, queue: str, id: str) -> MessageInfo:
        path = f"{_q(queue)}/messages/{quote(id, safe='')}"
        return await self._request("GET", path, None, MessageInfo)

    async def set_priority(self, queue: str, id: str, priority: int) -> MessageInfo:
        """Change a stored message's priority (0-9); deliveries still to come use it."""
        path = f"{_q(queue)}/messages/{quote(id, safe='')}"
        return await self._request("PATCH", path, PriorityChange(priority=priority), MessageInfo)

    # --- plumbing ------------------------------------------------------------------

    def session(self) -> aiohttp.ClientSession:
        """The HTTP session, made on first use (it must be made inside the running loop)."""
        if self._closed:
            raise BrokerError(0, ErrorCode.UNAVAILABLE, "the client is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers,
                                                  connector=self._connector,
                                                  connector_owner=self._connector is None)
        return self._session

    async def open_pipe(self) -> Pipe:
        """A new WebSocket of its own (a Consumer's subscription lives and dies with it)."""
        return await Pipe.open(self.session(), self.url + "/v1/ws", self._headers, self.timeout)

    async def _shared_pipe(self) -> Pipe | None:
        """The client's shared WebSocket, (re)opened on demand; None when HTTP must do."""
        if not self._websocket:
            return None
        if self._pipe is not None and not self._pipe.closed:
            return self._pipe
        async with self._pipe_lock:
            if self._pipe is None or self._pipe.closed:
                old, self._pipe = self._pipe, None
                if old is not None:
                    await old.close()
                try:
                    self._pipe = await self.open_pipe()
                except NoWebSocketError:
                    self._websocket = False  # an older broker: HTTP from now on
                    return None
            return self._pipe

    async def _request(
        self,
        method: str,
        path: str,
        body: BaseModel | None,
        model: type[M],
        *,
        params: dict[str, str] | None = None,
        within: float | None = None,
    ) -> M:
        """A retried HTTP call whose answer is parsed as `model`."""

        async def attempt() -> M:
            return _parse(model, *await self._call(method, path, body, params, within))

        return await with_retries(attempt, self.policy)

    async def _send(self, method: str, path: str) -> None:
        """A retried HTTP call whose answer has no body worth reading (DELETE)."""
        await with_retries(lambda: self._call(method, path), self.policy)

    async def _call(
        self,
        method: str,
        path: str,
        body: BaseModel | None = None,
        params: dict[str, str] | None = None,
        within: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """One HTTP attempt: the 2xx status and body, or the translated error."""
        data = body.model_dump_json() if body is not None else None
        sent = _JSON if data is not None else None
        if headers:
            sent = {**(sent or {}), **headers}
        try:
            async with self.session().request(
                method,
                self.url + path,
                data=data,
                params=params,
                headers=sent,
                timeout=aiohttp.ClientTimeout(total=within or self.timeout),
                # A broker never redirects: following one would send the token, and the
                # operator's calls, to wherever the far end points.
                allow_redirects=False,
            ) as response:
                raw = await response.read()
                status, reason = response.status, response.reason or ""
                wait = retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as e:
            raise unreachable(self.url, e) from e
        if status >= 300:
            raise error_from_response(status, raw, reason, wait)
        return status, raw


def _parse(model: type[M], status: int, raw: bytes) -> M:
    try:
        return parse_answer(model, raw)
    except ValidationError as e:  # a protocol mismatch: a 2xx status, so it is not retried
        first = str(e).splitlines()[0]
        raise BrokerError(status, ErrorCode.BAD_REQUEST, f"unexpected answer: {first}") from e


def _q(queue: str) -> str:
    return f"/v1/queues/{quote(queue, safe='')}"


def _g(queue: str, group: str) -> str:
    return f"{_q(queue)}/groups/{quote(group, safe='')}"


def _expect(value: list[T] | None, field: str) -> list[T]:
    if value is None:  # a protocol mismatch: retrying would not help, so a 2xx status
        raise BrokerError(200, ErrorCode.BAD_REQUEST, f"the broker's reply lacks {field!r}")
    return value


async def _gather(awaitables: Any) -> list[list[str]]:
    """Run every publish batch; if one fails for good, cancel the rest and raise its error."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
