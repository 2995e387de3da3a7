"""The collector's work: take deliveries in batches, store them, ack only after the commit.

Idempotent by construction: the store ignores a row_id or message id it already holds,
so a redelivery (a collector killed before its ack, a lease that ran out) stores nothing
twice. A many-rows message (dcgm-rows/v1) stores each row under `<message id>:<index>`,
so a redelivered one is stored once too. Messages that are not telemetry rows (poison)
are nacked; the broker moves them to the group's dead-letter queue after maxDeliveries.
A poison row inside a many-rows message must not take its good neighbours with it: the
good rows are stored, the poison row is published again as a message of its own (dedup
id `<message id>:<index>`, so a redelivery republishes it once) and takes that path,
and only then is the many-rows message acked. (Every group of the queue sees the
republished row; a pipeline's queue has one group.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ferry.broker.client import BrokerClient, Consumer
from ferry.broker.models import Delivery, OutgoingMessage
from ferry.kit.backoff import ceiling
from ferry.kit.tracing import spans_each, traceparent_of, tracer
from ferry.telemetry.parsing.messages import (
    SCHEMA_HEADER,
    SCHEMA_VERSION,
    carries_rows,
    part_id,
    row_of,
    rows_of,
)
from ferry.telemetry.parsing.rows import RowError, content_id
from ferry.telemetry.storage.base import StorageError, Store
from ferry.telemetry.storage.records import NewSample

log = logging.getLogger("ferry.telemetry.collector")
ROW_BYTES = 550  # a generated row's JSON, about
TRACER = "ferry.telemetry.collector"
STORAGE_BACKOFF = (0.2, 5.0)  # first and longest wait between write attempts, seconds


@dataclass(frozen=True)
class Settings:
    queue: str
    group: str
    consumer: str
    batch_size: int = 1000  # rows per write (a many-rows message counts all its rows)
    flush_interval: float = 0.2  # seconds a partial batch waits for more deliveries
    max_in_flight: int = 1000
    visibility_timeout_ms: int | None = None


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.messages = Counter(
            "ferry_collector_messages",
            "rows stored or found stored already, poison deliveries, and poison rows split "
            "out of many-rows messages, by outcome",
            ["outcome"],
            registry=r,
        )
        self.batches = Counter("ferry_collector_batches", "batches written", registry=r)
        self.redelivered = Counter(
            "ferry_collector_redelivered",
            "deliveries of a message delivered before (a lease ran out or was handed back)",
            registry=r,
        )
        self.write_seconds = Histogram(
            "ferry_collector_write_seconds", "one batch write, commit included", registry=r
        )
        self.storage_up = Gauge(
            "ferry_collector_storage_up", "1 when the last write worked", registry=r
        )
        self.storage_up.set(1)


class Collector:
    def __init__(
        self,
        settings: Settings,
        client: BrokerClient,
        store: Store,
        stop: asyncio.Event,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.s = settings
        self.client = client
        self.store = store
        self.stop = stop
        self.metrics = metrics or Metrics()
        self.counts = {"stored": 0, "duplicate": 0, "poison": 0, "split": 0, "redelivered": 0}
        self.storage_problem: str | None = None
        self.running = False

    async def run(self) -> dict[str, int]:
        """Collect until `stop` is set, then drain: take no new leases, store and ack every
        one held; only what cannot be stored before the end is handed back to the broker."""
        consumer = self.client.consumer(
            self.s.queue,
            self.s.group,
            self.s.consumer,
            max_in_flight=self.s.max_in_flight,
            visibility_timeout_ms=self.s.visibility_timeout_ms,
        )
        inbox: asyncio.Queue[Delivery] = asyncio.Queue()
        async with consumer:
            pump = asyncio.create_task(self._pump(consumer, inbox), name="collector-pump")
            self.running = True
            try:
                while not self.stop.is_set() and not pump.done():
                    batch = await self._gather(inbox, pump)
                    if batch:
                        await self._handle(consumer, batch)
                if not pump.done():
                    # Stopped: take no new leases, then finish every one already held, so
                    # a scale-in redelivers nothing (close() hands back what is left).
                    await consumer.stop_receiving()
                    await pump  # ends after the last held delivery
                    rest = [inbox.get_nowait() for _ in range(inbox.qsize())]
                    log.info("draining", extra={"deliveries": len(rest)})
                    for start in range(0, len(rest), self.s.batch_size):
                        await self._handle(consumer, rest[start:start + self.s.batch_size])
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump  # re-raises the broker error that ended it, if any
            finally:
                self.running = False
                if not pump.done():
                    pump.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await pump
        log.info("stopped", extra=self.counts)
        return dict(self.counts)

    @staticmethod
    async def _pump(consumer: Consumer, inbox: asyncio.Queue[Delivery]) -> None:
        async for delivery in consumer:
            inbox.put_nowait(delivery)

    async def _gather(
        self, inbox: asyncio.Queue[Delivery], pump: asyncio.Task[None]
    ) -> list[Delivery]:
        """One batch: wait for a first delivery, then take more for up to flush_interval."""
        first = await self._next(inbox, None, pump)
        if first is None:
            return []
        batch = [first]
        rows = rows_in(first)
        deadline = time.monotonic() + self.s.flush_interval
        while rows < self.s.batch_size:
            if not inbox.empty():
                batch.append(inbox.get_nowait())
                rows += rows_in(batch[-1])
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            item = await self._next(inbox, left, pump)
            if item is None:
                break
            batch.append(item)
            rows += rows_in(item)
        return batch

    async def _next(
        self, inbox: asyncio.Queue[Delivery], wait: float | None, pump: asyncio.Task[None]
    ) -> Delivery | None:
        """The next delivery, or None on timeout, stop or the end of the stream.
        A cancelled Queue.get never takes an item, so nothing is lost here."""
        get = asyncio.create_task(inbox.get())
        stopped = asyncio.create_task(self.stop.wait())
        await asyncio.wait(
            {get, stopped, pump}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
        )
        get.cancel()
        stopped.cancel()
        await asyncio.gather(get, stopped, return_exceptions=True)
        return None if get.cancelled() else get.result()

    async def _handle(self, consumer: Consumer, batch: list[Delivery]) -> None:
        # Each message's processing continues its streamer's trace (no cost without an SDK).
        with spans_each(tracer(TRACER), f"{self.s.queue} process", "consumer",
                        (traceparent_of(d.headers) for d in batch),
                        {"messaging.system": "ferry", "messaging.destination.name": self.s.queue,
                         "messaging.consumer.group.name": self.s.group}):
            await self._process(consumer, batch)

    async def _process(self, consumer: Consumer, batch: list[Delivery]) -> None:
        again = sum(d.delivery_count > 1 for d in batch)
        if again:
            self.counts["redelivered"] += again
            self.metrics.redelivered.inc(again)
        parsed = [parse(d) for d in batch]
        good = [d for d, p in zip(batch, parsed, strict=True) if isinstance(p, Parsed)]
        poison = [d for d, p in zip(batch, parsed, strict=True) if isinstance(p, RowError)]
        for d, p in zip(batch, parsed, strict=True):
            if isinstance(p, RowError):
                self._report("poison message", d, p.reason)
            else:
                for i, _, reason in p.poison:
                    self._report("poison row split out", d, reason, index=i)
        samples = [s for p in parsed if isinstance(p, Parsed) for s in p.samples]
        split = [(d, p) for d, p in zip(batch, parsed, strict=True)
                 if isinstance(p, Parsed) and p.poison]
        if good:
            inserted = await self._write(samples) if samples else 0
            if inserted is None:  # stopped while the store was down: hand them back
                await consumer.nack(*good, delay_ms=0)
                return
            # Counted once committed, before the ack: whoever sees the ack (the group's
            # lag at 0) sees these counts too.
            self._count("stored", inserted)
            self._count("duplicate", len(samples) - inserted)
            if split:  # stored before the republish, so a crash between loses no good row
                await self.client.publish(self.s.queue, [
                    OutgoingMessage(body=body, dedup_id=part_id(d.id, i),
                                    headers={SCHEMA_HEADER: SCHEMA_VERSION})
                    for d, p in split for i, body, _ in p.poison
                ])
                self._count("split", sum(len(p.poison) for _, p in split))
            await consumer.ack(*good)
        if poison:
            await consumer.nack(*poison)
            self._count("poison", len(poison))

    @staticmethod
    def _report(what: str, d: Delivery, reason: str, **more: int) -> None:
        extra = {"id": d.id, "delivery_count": d.delivery_count, "reason": reason, **more}
        log.warning(what, extra=extra)

    async def _write(self, samples: list[NewSample]) -> int | None:
        """Write until it commits; None if asked to stop before it could."""
        failures = 0
        while True:
            try:
                with self.metrics.write_seconds.time():
                    inserted = await self.store.write(samples)
            except StorageError as e:
                wait = ceiling(failures, *STORAGE_BACKOFF)
                failures += 1
                self.storage_problem = str(e)
                self.metrics.storage_up.set(0)
                log.error("storage write failed; retrying", extra={"error": str(e), "wait_s": wait})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), wait)
                if self.stop.is_set():
                    return None
                continue
            self.storage_problem = None
            self.metrics.storage_up.set(1)
            self.metrics.batches.inc()
            return inserted

    def _count(self, outcome: str, n: int) -> None:
        if n:
            self.counts[outcome] += n
            self.metrics.messages.labels(outcome).inc(n)


@dataclass(frozen=True)
class Parsed:
    """A delivery's valid rows, and the poison rows of a many-rows message: (index, body,
    reason)."""

    samples: list[NewSample]
    poison: list[tuple[int, object, str]]


def parse(d: Delivery) -> Parsed | RowError:
    """A delivery's samples; RowError when the whole message is poison."""
    try:
        if not carries_rows(d.headers):
            content = row_of(d.body)
            return Parsed([NewSample(content_id(content), d.id, content)], [])
        good, poison = rows_of(d.body, d.headers[SCHEMA_HEADER])
    except RowError as e:
        return e
    return Parsed([NewSample(content_id(c), part_id(d.id, i), c) for i, c in good], poison)


def rows_in(d: Delivery) -> int:
    """About how many rows a delivery carries (what a write's batch size counts), without
    parsing it: a row's JSON is ~550 bytes."""
    if carries_rows(d.headers) and isinstance(d.body, str):
        return max(1, len(d.body) // ROW_BYTES)
    return 1
