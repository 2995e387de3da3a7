"""The storage interface every engine implements (and the shared test suite checks)."""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from ferry.telemetry.storage.records import GpuSummary, Sample, SampleQuery


class StorageError(Exception):
    """The store cannot be reached or refused a write; callers retry or report."""


class Store(abc.ABC):
    """Async, idempotent store of telemetry samples.

    `write` commits before it returns: once it has returned, the samples survive a crash,
    so a collector may ack the messages they came from.
    """

    engine: str

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create the schema if missing (safe from several processes at once)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; safe to call twice."""

    @abc.abstractmethod
    async def write(self, samples: Sequence[Sample]) -> int:
        """Store samples in one transaction; returns how many were new (the rest repeated
        a row_id or message_id already stored and were ignored)."""

    @abc.abstractmethod
    async def gpus(self) -> list[GpuSummary]:
        """Every GPU seen, ordered by hostname then GPU index."""

    @abc.abstractmethod
    async def gpu(self, uuid: str) -> GpuSummary | None: ...

    @abc.abstractmethod
    async def samples(self, query: SampleQuery) -> list[Sample]:
        """Samples of one GPU ordered by (timestamp, row_id), at most query.limit."""

    @abc.abstractmethod
    async def count(self) -> int: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StorageError when the store cannot answer."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def now_us() -> int:
    return time.time_ns() // 1000
