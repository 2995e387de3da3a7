"""Consumer: deliveries of one (queue, group) as an async iterator, with leases kept alive.

Sources: "stream" subscribes over the WebSocket /v1/ws (acks go back on the same
connection), "sse" reads the Server-Sent Events stream, "poll" long-polls receive.
Every delivery is held until it is acked or nacked; while held, a background task extends
its lease before it runs out (auto_extend), and close() hands back whatever is still held.
A consumer told to stop calls stop_receiving() first: it takes no new leases, finishes the
ones it holds (iteration ends after the last), and close() hands back only what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Literal

import aiohttp
from pydantic import ValidationError

from ferry.broker.client.api import TRACER
from ferry.broker.client.errors import (
    BrokerError,
    error_from_response,
    is_retryable,
    retry_after,
    unreachable,
)
from ferry.broker.client.leases import Leases
from ferry.broker.client.pipe import NoWebSocketError, Pipe
from ferry.broker.client.retrying import pause
from ferry.broker.client.sse import EventParser
from ferry.broker.models import (
    Delivery,
    ReceiptResult,
    ReceiptStatus,
    ReceiveResponse,
    WsSubscribe,
    parse_answer,
)
from ferry.kit.tracing import span, traceparent_of, tracer

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from ferry.broker.client.api import BrokerClient, SettleOp

log = logging.getLogger(__name__)

Mode = Literal["stream", "sse", "poll"]
POLL_WAIT_MS = 2000  # long enough to idle cheaply, short enough that close() is prompt
_END = None


class Consumer:
    """Async iterator of Delivery and async context manager; see the module docstring."""

    def __init__(
        self,
        client: BrokerClient,
        queue: str,
        group: str,
        consumer: str,
        *,
        max_in_flight: int = 100,
        mode: Mode = "stream",
        visibility_timeout_ms: int | None = None,
        auto_extend: bool = True,
    ) -> None:
        if mode not in ("stream", "sse", "poll"):
            raise ValueError(f"mode must be 'stream', 'sse' or 'poll', not {mode!r}")
        self.queue, self.group, self.name = queue, group, consumer
        self.mode: Mode = mode
        self._client = client
        self._max_in_flight = max_in_flight
        self._visibility_ms = visibility_timeout_ms
        self._auto_extend = auto_extend
        self._buffer: asyncio.Queue[Delivery | BrokerError | None] = asyncio.Queue()
        self._leases = Leases(visibility_s=30.0)
        self._room = asyncio.Event()  # poll mode: set while fewer than max_in_flight are held
        self._wake = asyncio.Event()  # the extender: new leases arrived
        self._pipe: Pipe | None = None
        self._source: asyncio.Task[None] | None = None
        self._extender: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()
        self._closing = False
        self._receiving = True  # asking for more: until stop_receiving()
        self._taking = True  # deliveries reach the iterator: until they end
        self._sub_seq: int | None = None  # stream: the live subscription's seq
        self._polling = mode == "poll"

    # --- the user's side -----------------------------------------------------

    async def __aenter__(self) -> Consumer:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __aiter__(self) -> Consumer:
        return self

    async def __anext__(self) -> Delivery:
        if self._source is None:
            await self.start()
        while True:
            item = await self._buffer.get()
            if item is _END or isinstance(item, BrokerError):
                self._buffer.put_nowait(item)  # every later call ends the same way
                if item is _END:
                    raise StopAsyncIteration
                raise item
            if item.receipt in self._leases:  # not handed back or lost meanwhile
                t = tracer(TRACER)
                if t is not None:
                    self._received_span(t, item)
                return item

    def _received_span(self, t: Tracer, d: Delivery) -> None:
        """A span as the delivery reaches the user, a child of its producer's span."""
        with span(t, f"{self.queue} receive", "consumer", parent=traceparent_of(d.headers),
                  attributes={"messaging.system": "ferry",
                              "messaging.destination.name": self.queue,
                              "messaging.consumer.group.name": self.group,
                              "messaging.message.id": d.id,
                              "messaging.message.delivery_count": d.delivery_count}):
            pass

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def buffered(self) -> int:
        """Deliveries received and not yet taken by the iterator."""
        return self._buffer.qsize()

    @property
    def held(self) -> int:
        """Deliveries received and neither acked nor nacked yet."""
        return len(self._leases)

    async def ack(self, *deliveries: Delivery) -> None:
        await self._settle("ack", deliveries)

    async def nack(self, *deliveries: Delivery, delay_ms: int | None = None) -> None:
        await self._settle("nack", deliveries, delay_ms=delay_ms)

    async def start(self) -> None:
        """Resolve the lease length and start receiving; iterating starts it too."""
        async with self._start_lock:
            if self._source is not None or self._closing or not self._receiving:
                return
            visibility_ms = self._visibility_ms
            if visibility_ms is None and self._auto_extend:
                visibility_ms = await self._group_visibility_ms()
            self._leases = Leases(visibility_s=(visibility_ms or 30_000) / 1000)
            self._room.set()
            sources = {"stream": self._stream, "sse": self._sse, "poll": self._poll}
            self._source = asyncio.create_task(sources[self.mode](), name=f"ferry-{self.mode}")
            if self._auto_extend:
                self._extender = asyncio.create_task(self._extend_leases(), name="ferry-extend")

    async def stop_receiving(self) -> None:
        """Take no new leases; what was received can still be iterated and settled, and
        iteration ends after it. Safe twice; close() still hands back what is left.

        stream: the broker stops pushing and confirms after its last delivery, keeping the
        connection for acks; poll: the running long poll answers first; sse: the stream
        stays open until close() (an SSE stream's leases go back when it ends), and what it
        delivers meanwhile is held back from the iterator and handed back by close().
        """
        if self._closing or not self._receiving:
            return
        self._receiving = False
        self._room.set()
        if self._source is not None and self._polling:
            await self._stop_source()
        elif self._source is not None and self.mode != "sse":
            # stream: what is pushed before the reply still reaches the iterator
            pipe, sub = self._pipe, self._sub_seq
            if pipe is not None and sub is not None:
                try:
                    await pipe.unsubscribe(sub)
                except BrokerError as e:  # the connection went: the broker handed them back
                    log.info("could not unsubscribe (%s); the leases went back with it", e)
        self._taking = False
        self._buffer.put_nowait(_END)

    async def close(self) -> None:
        """Stop receiving and hand back (nack) every delivery not yet acked; safe twice."""
        if self._closing:
            return
        self._closing = True
        self._room.set()
        await self._stop_source()
        if self._extender is not None:
            self._extender.cancel()
            await asyncio.gather(self._extender, return_exceptions=True)
        receipts = self._leases.receipts()
        if receipts:
            try:
                await self._client.nack(self.queue, self.group, receipts, delay_ms=0)
            except BrokerError as e:
                log.warning(
                    "could not hand back %d deliveries (%s); their leases will expire",
                    len(receipts),
                    e,
                )
            self._leases.drop(receipts)
        self._buffer.put_nowait(_END)

    # --- settling and leases -------------------------------------------------------

    async def _settle(
        self,
        op: SettleOp,
        deliveries: tuple[Delivery, ...],
        *,
        delay_ms: int | None = None,
    ) -> None:
        receipts = [d.receipt for d in deliveries]
        results = await self._client.settle(
            op, self.queue, self.group, receipts, delay_ms=delay_ms, pipe=self._pipe
        )
        self._leases.drop(receipts)
        if len(self._leases) < self._max_in_flight:
            self._room.set()
        _warn_unsettled(op, results)

    async def _extend_leases(self) -> None:
        loop = asyncio.get_running_loop()
        visibility_ms = max(1, round(self._leases.visibility_s * 1000))
        while True:
            self._wake.clear()
            due_at = self._leases.next_due()
            if due_at is None or due_at > loop.time():
                delay = None if due_at is None else due_at - loop.time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                continue
            now = loop.time()
            receipts = self._leases.due(now)
            try:
                results = await self._client.settle(
                    "extend",
                    self.queue,
                    self.group,
                    receipts,
                    visibility_timeout_ms=visibility_ms,
                    pipe=self._pipe,
                )
            except BrokerError as e:
                log.warning("extending %d leases failed: %s", len(receipts), e)
                if is_retryable(e):
                    await asyncio.sleep(self._leases.margin / 4)
                else:  # the group or queue is gone: so are the leases
                    self._leases.drop(receipts)
                continue
            kept = [r.receipt for r in results if r.status == ReceiptStatus.OK]
            self._leases.renewed(kept, now)
            # Receipts settled while the extend was on its way are not lost, just done.
            lost = [
                r.receipt
                for r in results
                if r.status != ReceiptStatus.OK and r.receipt in self._leases
            ]
            if lost:
                log.warning("%d leases were lost before they could be extended", len(lost))
                self._leases.drop(lost)

    async def _group_visibility_ms(self) -> int:
        group = await self._client.group_stats(self.queue, self.group)
        if group.settings.visibility_timeout_ms is not None:
            return group.settings.visibility_timeout_ms
        return (await self._client.queue_stats(self.queue)).settings.visibility_timeout_ms

    def _received(self, deliveries: list[Delivery]) -> None:
        self._leases.add(deliveries, asyncio.get_running_loop().time())
        self._wake.set()
        if len(self._leases) >= self._max_in_flight:
            self._room.clear()
        if self._taking and not self._closing:  # after close they are only handed back
            for delivery in deliveries:
                self._buffer.put_nowait(delivery)

    # --- sources -----------------------------------------------------------------

    async def _poll(self) -> None:
        while self._receiving and not self._closing:
            room = self._max_in_flight - len(self._leases)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                deliveries = await self._client.receive(
                    self.queue,
                    self.group,
                    self.name,
                    max=min(room, 1000),
                    wait_ms=POLL_WAIT_MS,
                    visibility_timeout_ms=self._visibility_ms,
                )
            except BrokerError as e:
                self._buffer.put_nowait(e)
                return
            self._received(deliveries)

    async def _stream(self) -> None:
        try:
            await self._reconnecting(self._stream_once)
        except NoWebSocketError as e:
            log.info("%s; consuming by long-poll instead", e)
            self._polling = True
            await self._poll()

    async def _sse(self) -> None:
        await self._reconnecting(self._sse_once)

    async def _reconnecting(self, connect: Callable[[Callable[[], None]], Awaitable[None]]) -> None:
        """Run one connection after another until close(); give up after the retry budget."""
        failures = 0

        def connected() -> None:
            nonlocal failures
            failures = 0

        while self._receiving and not self._closing:
            try:
                await connect(connected)
                continue  # the connection ended cleanly: open the next one at once
            except NoWebSocketError:
                raise
            except BrokerError as e:
                if self.closing or not self._receiving:
                    return
                delays = self._client.policy.delays()
                if not is_retryable(e) or failures >= len(delays):
                    self._buffer.put_nowait(e)
                    return
                log.info("consumer connection lost (%s); reconnecting", e)
                await asyncio.sleep(pause(delays[failures], e))
                failures += 1

    async def _stream_once(self, connected: Callable[[], None]) -> None:
        pipe = await self._client.open_pipe()
        if not self._receiving:  # stopped while connecting: subscribe to nothing
            await pipe.close()
            return
        ended: asyncio.Future[BrokerError] = asyncio.get_running_loop().create_future()

        def on_deliver(item: list[Delivery] | BrokerError) -> None:
            if isinstance(item, BrokerError):
                if not ended.done():
                    ended.set_result(item)
            else:
                self._received(item)

        self._pipe = pipe
        try:
            seq = pipe.next_seq()
            pipe.subscribe(seq, on_deliver)
            self._sub_seq = seq
            frame = WsSubscribe.model_construct(
                op="subscribe",
                seq=seq,
                queue=self.queue,
                group=self.group,
                consumer=self.name,
                max_in_flight=self._max_in_flight,
                visibility_timeout_ms=self._visibility_ms,
            )
            await pipe.call(seq, frame.model_dump_json())
            connected()
            raise await ended
        finally:
            self._pipe, self._sub_seq = None, None
            await pipe.close()

    async def _sse_once(self, connected: Callable[[], None]) -> None:
        params = {"consumer": self.name, "max_in_flight": str(self._max_in_flight)}
        if self._visibility_ms is not None:
            params["visibility_timeout_ms"] = str(self._visibility_ms)
        url = f"{self._client.url}/v1/queues/{self.queue}/groups/{self.group}/stream"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._client.timeout)
        try:
            async with self._client.session().get(url, params=params, timeout=timeout) as resp:
                if resp.status >= 300:
                    raise error_from_response(resp.status, await resp.read(), resp.reason or "",
                                              retry_after(resp.headers.get("Retry-After")))
                connected()
                parser = EventParser()
                async for line in resp.content:
                    event = parser.feed(line)
                    if event is not None and event.event in ("message", "deliver"):
                        self._received(_sse_deliveries(event.data))
        except (aiohttp.ClientError, TimeoutError) as e:
            raise unreachable(self._client.url, e) from e

    async def _stop_source(self) -> None:
        if self._source is None:
            return
        if self._polling:
            # Let the running long-poll answer, so nothing it leased goes unseen.
            wait_s = POLL_WAIT_MS / 1000 + self._client.timeout
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._source), wait_s)
        elif self._pipe is not None:
            await self._pipe.close()
        self._source.cancel()
        await asyncio.gather(self._source, return_exceptions=True)


def _sse_deliveries(data: str) -> list[Delivery]:
    """An SSE event carries one delivery, or `{"messages": [...]}` like receive."""
    try:
        if data.lstrip().startswith('{"messages"'):
            return parse_answer(ReceiveResponse, data).messages
        return [parse_answer(Delivery, data)]
    except ValidationError as e:
        log.warning("ignoring a malformed event: %s", str(e).splitlines()[0])
        return []


def _warn_unsettled(op: str, results: list[ReceiptResult]) -> None:
    bad = [r for r in results if r.status != ReceiptStatus.OK]
    if bad:
        log.warning(
            "%s: %d of %d receipts were %s (their lease had moved on)",
            op,
            len(bad),
            len(results),
            ", ".join(sorted({r.status for r in bad})),
        )
