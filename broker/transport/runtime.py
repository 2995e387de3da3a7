"""What every handler shares: the core, the store, wake-up signals, the clock."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from ferry.broker.core import (
    ROW_ID,
    ROW_PAYLOAD,
    Broker,
    Incoming,
    Kind,
    Leased,
    Queue,
    matches,
    rowid,
)
from ferry.broker.models import HeaderFilter
from ferry.broker.store import CHUNK, Engine
from ferry.broker.transport.keyring import Keyring
from ferry.broker.transport.memory import MemoryBudget
from ferry.broker.transport.signals import Signals
from ferry.kit.tracing import span, traceparent_of, tracer

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

log = logging.getLogger("ferry.broker")
TRACER = "ferry.broker"  # the OpenTelemetry tracer of the broker's spans (publish, deliver)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def durable(fut: asyncio.Future[None] | None) -> None:
    """Wait until the store has the writes of `fut` (None: nothing to store). Shielded:
    a request cancelled meanwhile (its client gone) must not cancel the commit's answer."""
    if fut is not None:
        await asyncio.shield(fut)


def queue_key(qid: int) -> Hashable:
    """Signal key: the queue has something newly ready."""
    return ("q", qid)


def flow_key(gid: int, consumer: str) -> Hashable:
    """Signal key: a consumer's in-flight count went down (streams wait on it)."""
    return ("c", gid, consumer)


BATCH_BYTES = 4 * 1024 * 1024  # --batch-bytes: documents in one receive, push or dead page
MEMORY_BUDGET_BYTES = 64 * 1024 * 1024  # --memory-budget-bytes: held by requests at once
BODY_TIMEOUT_S = 15.0  # --body-timeout-seconds: a body that stops arriving this long gets 408
STATS_CHUNK = 100  # queues whose stats are built between two turns of the event loop


class Role(StrEnum):
    LEADER = "leader"  # writes to the store and serves
    STANDBY = "standby"  # waits to take over (PostgreSQL engine); answers only health


@dataclass
class Runtime:
    core: Broker
    store: Engine
    role: Role = Role.LEADER
    tokens: Keyring | None = None  # --token-file
    batch_bytes: int = BATCH_BYTES
    body_timeout_s: float = BODY_TIMEOUT_S
    memory: MemoryBudget = field(default_factory=lambda: MemoryBudget(MEMORY_BUDGET_BYTES))
    draining: bool = False
    signals: Signals = field(default_factory=Signals)
    published: int = 0  # messages stored since start (not counting dedup hits)
    # Set once stored dedup ids are indexed (read after a restart while already serving).
    dedup_loaded: asyncio.Event = field(default_factory=asyncio.Event)
    loaded: asyncio.Event = field(default_factory=asyncio.Event)  # every stored message read
    failure: str | None = None  # why the broker is failing (it is stopping)
    lost: str | None = None  # why the store was lost, if that was the failure: start over
    # Set with `failure`: the broker is to stop (see __main__._until_stopped_or_lost).
    failed: asyncio.Event = field(default_factory=asyncio.Event)

    # Keys the core's receipt tokens: random per process, so no client can mint one.
    receipt_key: bytes = field(default_factory=lambda: os.urandom(32), repr=False)

    def __post_init__(self) -> None:
        self.core.receipts.key = self.receipt_key
        # At the loss itself: a request answered 503 for it must not be followed by one
        # answered from the core (the supervisor's own wait sees the loss steps later).
        self.store.on_lost(self._store_lost)

    def _store_lost(self, why: str) -> None:
        if self.failure is None:  # a failure before it decides how the broker stops
            self.lost = why
        self.fail(f"store lost: {why}")

    def fail(self, why: str) -> None:
        """Fail-stop: the core may hold writes the store will never have.

        Writes are applied to the core before they are durable (that is what
        lets many requests share one commit), so after a failed commit (the
        store is lost: Engine.on_lost) or a background task that died, the core is
        no longer what a restart would read back. Undoing each write in memory
        would need an inverse of every core operation; stopping needs none: from
        here on every request but health and metrics gets 503, /healthz and
        /readyz say so, and the process starts over on what the store holds,
        which is exactly what was answered as durable.
        """
        if self.failure is not None:
            return
        self.failure = why
        log.critical("failing: stopping to start over from the store", extra={"reason": why})
        self.failed.set()

    async def restore_messages(self) -> None:
        """Stream stored messages into the core, oldest first, while already serving."""
        if self.role is not Role.LEADER:  # a standby first waits to take over
            await self.store.elect()
            self.core = await self.store.restore(now_ms())
            self.core.receipts.key = self.receipt_key
            self.role = Role.LEADER
            log.info("leading", extra={"engine": self.store.name,
                                       "queues": len(self.core.queues)})
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for q in list(self.core.queues.values()):
            for lo, hi in q.chunks_to_restore(CHUNK):
                chunk = await self.store.chunk(q.qid, lo, hi)
                if self.core.by_qid.get(q.qid) is not q:
                    break  # deleted meanwhile
                q.restore_chunk(chunk, hi)
                self.signals.notify(queue_key(q.qid))
            q.finish_restore()
            self.signals.notify(queue_key(q.qid))
        self.store.loaded()
        self.loaded.set()
        log.info("restored", extra={
            "messages": sum(q.live for q in self.core.queues.values()),
            "seconds": round(loop.time() - t0, 3),
        })
        await self.restore_dedup()

    async def restore_dedup(self) -> None:
        windows = {
            q.qid: q.settings.dedup_window_ms for q in self.core.queues.values()
            if not q.dedup_ready
        }
        if windows:
            stored = await self.store.dedup(windows, now_ms())
            for qid, dedup in stored.items():
                q = self.core.by_qid.get(qid)
                if q is not None:
                    q.restore_dedup(dedup)
        self.dedup_loaded.set()

    async def dedup_ready(self, q: Queue, items: list[Incoming]) -> None:
        """Publishes carrying dedup ids wait until a restart has indexed the stored ones."""
        if not q.dedup_ready and any(m.dedup_id is not None for m in items):
            await self.dedup_loaded.wait()

    def flush(self, wait: bool = True) -> asyncio.Future[None] | None:
        """Hand the core's pending writes to the store (a future when wait)."""
        w = self.core.take_writes()
        if not w:
            return None
        bodies = self.store.bodies
        for kind, rows in w.ops:
            if kind is Kind.CONSUMED:
                bodies.drop([row[0] for row in rows])
            elif kind is Kind.PRIORITY:  # deliveries from now on carry the new priority
                for _, doc, rid in rows:
                    bodies.drop([rid])
                    bodies.put(rid, doc)
        return self.store.writer.submit(w, wait)

    async def commit(self) -> None:
        await durable(self.flush())

    async def publish(self, q: Queue, items: list[Incoming]) -> list[int]:
        await self.dedup_ready(q, items)
        ids, fut = self.publish_nowait(q, items)
        await durable(fut)
        return ids

    def publish_nowait(
        self, q: Queue, items: list[Incoming]
    ) -> tuple[list[int], asyncio.Future[None] | None]:
        """Publish now; the future resolves once durable (None: nothing new to store)."""
        ids = self.core.publish(q.name, items, now_ms())
        w = self.core.take_writes()
        put = self.store.bodies.put
        for kind, rows in w.ops:
            if kind is Kind.MESSAGE:
                for row in rows:
                    put(row[ROW_ID], row[ROW_PAYLOAD])
                self.published += len(rows)
            elif kind is Kind.CONSUMED:  # no group's filter wants them
                self.store.bodies.drop([row[0] for row in rows])
        if not w:
            return ids, None
        fut = self.store.writer.submit(w)
        assert fut is not None
        fut.add_done_callback(functools.partial(self._durable, q.qid, q.next_seq))
        return ids, fut

    def _durable(self, qid: int, next_seq: int, fut: asyncio.Future[None]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        if self.core.mark_durable(qid, next_seq):
            # Wake the pushes after this future's other callbacks, the publish's own answer
            # among them: the producer's reply then leaves first (measured: 0.64 -> 0.04 ms
            # from commit to reply sent, with two consumers being pushed to).
            asyncio.get_running_loop().call_soon(self.signals.notify, queue_key(qid))

    def hold_batch(self, q: Queue) -> int:
        """Reserve the memory of one batch of q's documents; 0 when the budget is taken.

        A batch stops at batch_bytes but always holds one message, so it may reach
        batch_bytes plus one of the queue's largest messages.
        """
        n = self.batch_bytes + q.settings.max_message_bytes
        return n if self.memory.try_take(n) else 0

    async def deliveries(
        self, q: Queue, group: str, leased: list[Leased]
    ) -> list[tuple[int, bytes, Leased]]:
        """Documents for leased messages, up to batch_bytes (at least one).

        Leases past the byte budget are undone (ready again, delivery count as
        before); a message whose row vanished is dropped.
        """
        qid = q.qid
        rids = [rowid(qid, m.seq) for m in leased]
        docs, n = await self.store.bodies.get_within(rids, self.batch_bytes)
        if n < len(leased):
            self.core.unlease(q.name, group, leased[n:], now_ms())
            self.signals.notify(queue_key(qid))
        out = [(rid, doc, m) for rid, m in zip(rids, leased, strict=True)
               if (doc := docs.get(rid)) is not None]
        f = q.groups[group].settings.filter if group in q.groups else None
        if f is not None:
            out = self._skip_unmatched(q, group, f, out)
        t = tracer(TRACER)
        if t is not None:
            deliver_spans(t, q.name, group, out)
        return out

    def _skip_unmatched(
        self, q: Queue, group: str, f: HeaderFilter, found: list[tuple[int, bytes, Leased]]
    ) -> list[tuple[int, bytes, Leased]]:
        """Messages stored before the group's filter applied are checked here (later ones
        were at publish): those that do not match end as filtered, never delivered."""
        keep: list[tuple[int, bytes, Leased]] = []
        skip: list[tuple[int, bytes, Leased]] = []
        for item in found:
            headers = orjson.loads(item[1]).get("headers") or {}
            (keep if matches(f, headers) else skip).append(item)
        if skip:
            self.core.skip(q.name, group, [m for _, _, m in skip], now_ms())
            self.flush(wait=False)
        return keep


RUNTIME = web.AppKey("runtime", Runtime)


def deliver_spans(t: Tracer, queue: str, group: str,
                  found: list[tuple[int, bytes, Leased]]) -> None:
    """A span per delivery, a child of the message's producer (its traceparent header).
    Only with an SDK configured: reading the headers back costs a parse per message."""
    for rid, doc, m in found:
        headers = orjson.loads(doc).get("headers")
        with span(t, f"{queue} deliver", "server", parent=traceparent_of(headers),
                  attributes={"messaging.system": "ferry", "messaging.destination.name": queue,
                              "messaging.consumer.group.name": group,
                              "messaging.message.id": str(rid),
                              "messaging.message.delivery_count": m.delivery_count}):
            pass


async def in_chunks(rt: Runtime, names: list[str]) -> AsyncIterator[Queue]:
    """The queues of these names still there, yielding to the event loop every STATS_CHUNK."""
    for i, name in enumerate(names):
        if i and i % STATS_CHUNK == 0:
            await asyncio.sleep(0)
        q = rt.core.queues.get(name)
        if q is not None:
            yield q
