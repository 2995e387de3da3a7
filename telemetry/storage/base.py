"""The storage interface every engine implements (and the shared test suite checks)."""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from ferry.telemetry.storage import queries
from ferry.telemetry.storage.records import GpuSummary, NewSample, Sample, SampleQuery
from ferry.telemetry.storage.rowmapping import gpu_of, sample_of


class StorageError(Exception):
    """The store cannot be reached or refused a write; callers retry or report."""


class Store(abc.ABC):
    """Async, idempotent store of telemetry samples.

    `write` commits before it returns: once it has returned, the samples survive a crash,
    so a collector may ack the messages they came from.
    """

    engine: str
    placeholder: queries.Placeholder  # how the engine's SQL names parameter n

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create the schema if missing (safe from several processes at once)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; safe to call twice."""

    @abc.abstractmethod
    async def write(self, samples: Sequence[NewSample]) -> int:
        """Store samples in one transaction; returns how many were new (the rest repeated
        a row_id or message_id already stored and were ignored)."""

    @abc.abstractmethod
    async def _fetch(self, sql: str, *args: object) -> list[Any]:
        """The rows of one query (parameters named by `placeholder`); StorageError when
        the store cannot answer."""

    async def gpus(self) -> list[GpuSummary]:
        """Every GPU seen, ordered by hostname then GPU index."""
        return [gpu_of(r) for r in await self._fetch(queries.select_gpus())]

    async def gpu(self, uuid: str) -> GpuSummary | None:
        rows = await self._fetch(queries.select_gpus(f"WHERE uuid = {self.placeholder(1)}"), uuid)
        return gpu_of(rows[0]) if rows else None

    async def samples(self, query: SampleQuery) -> list[Sample]:
        """Samples of one GPU ordered by (timestamp, row_id), at most query.limit."""
        sql, args = queries.select_samples(query, self.placeholder)
        return [sample_of(r) for r in await self._fetch(sql, *args)]

    async def count(self) -> int:
        rows = await self._fetch("SELECT count(*) FROM telemetry_samples")
        return int(rows[0][0])

    async def ping(self) -> None:
        """Raise StorageError when the store cannot answer."""
        await self._fetch("SELECT 1")

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def now_us() -> int:
    return time.time_ns() // 1000
