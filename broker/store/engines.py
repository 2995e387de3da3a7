"""What the transport needs from a storage engine (SQLite or PostgreSQL): one protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ferry.broker.core import Broker, DedupIndex, Restored, Writes


class Committing(Protocol):
    """Group commit: writes submitted within one turn share one transaction."""

    @property
    def failed(self) -> bool:
        """Nothing can become durable any more (the engine is lost)."""

    batches: int  # transactions committed
    items: int  # requests made durable
    on_batch: Callable[[int, float], None] | None  # items, seconds

    def submit(self, writes: Writes, wait: bool = True) -> asyncio.Future[None] | None: ...


class Documents(Protocol):
    """Message documents for deliveries: a cache of recent publishes over the engine."""

    hits: int
    misses: int

    def put(self, rid: int, doc: bytes) -> None: ...

    def drop(self, rids: list[int]) -> None: ...

    async def get(self, rids: list[int]) -> dict[int, bytes]: ...

    async def get_within(self, rids: list[int], budget: int) -> tuple[dict[int, bytes], int]: ...


@dataclass(frozen=True)
class Leader:
    """Who holds the write lease of a queue set, as the engine records it."""

    holder: str
    epoch: int
    since_ms: int


class Loss:
    """Why an engine must stop writing: the first reason given wins (see Engine.on_lost).

    Both engines lose the same way (a failed or fenced commit, a committer or lock
    session gone), so both report it here.
    """

    def __init__(self) -> None:
        self.why: str | None = None
        self._listeners: list[Callable[[str], None]] = []

    def subscribe(self, listener: Callable[[str], None]) -> None:
        """Call `listener` with the first reason, at the loss itself (at once if lost already).

        Synchronously, in the same step that fails the waiting writes: before any of
        their requests is answered, so no later request is answered from a core that
        holds what the store lost.
        """
        self._listeners.append(listener)
        if self.why is not None:
            listener(self.why)

    def __call__(self, why: str) -> None:
        if self.why is None:
            self.why = why
            for listener in self._listeners:
                listener(why)


class Engine(Protocol):
    """A durable store behind the broker.

    `elect` returns once this process may write (SQLite: it holds the data dir's
    lock; PostgreSQL: it holds the queue set's advisory lock and raised the epoch);
    `restore` then rebuilds the core. `on_lost` listeners hear when this process must stop
    writing (a failed or fenced commit, a lost lock): the broker then fail-stops,
    since its core may hold changes that never became durable.
    """

    name: str

    @property
    def writer(self) -> Committing: ...

    @property
    def bodies(self) -> Documents: ...

    async def elect(self) -> None: ...

    async def leader(self) -> Leader | None: ...

    async def restore(self, now: int) -> Broker:
        """Queues and groups, and writing starts; stream the messages in with `chunk`."""

    async def chunk(self, qid: int, lo_seq: int, hi_seq: int) -> Restored:
        """Stored messages of a queue in [lo_seq, hi_seq)."""

    def loaded(self) -> None: ...

    async def dedup(self, windows: dict[int, int], now: int) -> dict[int, DedupIndex]:
        """Stored dedup ids per queue id, each inside its window (ms)."""

    def on_lost(self, listener: Callable[[str], None]) -> None:
        """Call `listener` when this process must stop writing (Loss.subscribe)."""

    async def aclose(self) -> None: ...
