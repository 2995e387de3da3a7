"""Message documents for deliveries: a bounded cache of recent publishes, then the engine.

A document is the JSON object `{"key":..,"priority":..,"headers":..,"body":..}`
as published; deliveries splice in id, delivery count and receipt. The cache
means a message consumed soon after it was published is never read from disk.
"""

from __future__ import annotations

import abc
import asyncio
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ferry.broker.store.schema import connect

DEFAULT_CACHE_BYTES = 32 * 1024 * 1024
_CHUNK = 500  # SQLite's default limit of host parameters is far above this


class DocumentCache(abc.ABC):
    """The cache; each engine reads what it misses (`_fetch`)."""

    def __init__(self) -> None:
        self._cache: dict[int, bytes] = {}
        self._cache_bytes = 0
        self._budget = DEFAULT_CACHE_BYTES
        self.hits = 0
        self.misses = 0

    def put(self, rid: int, doc: bytes) -> None:
        cache = self._cache
        if rid in cache:
            return
        cache[rid] = doc
        self._cache_bytes += len(doc)
        if self._cache_bytes > self._budget:
            self._evict()

    def _evict(self) -> None:
        cache = self._cache
        target = self._budget * 3 // 4
        it = iter(list(cache))
        while self._cache_bytes > target:
            rid = next(it)
            self._cache_bytes -= len(cache.pop(rid))

    def drop(self, rids: list[int]) -> None:
        cache = self._cache
        for rid in rids:
            doc = cache.pop(rid, None)
            if doc is not None:
                self._cache_bytes -= len(doc)

    async def get(self, rids: list[int]) -> dict[int, bytes]:
        """Documents by id; ids missing from the result are no longer stored."""
        cache = self._cache
        found: dict[int, bytes] = {}
        missing: list[int] = []
        for rid in rids:
            doc = cache.get(rid)
            if doc is None:
                missing.append(rid)
            else:
                found[rid] = doc
        self.hits += len(found)
        if missing:
            self.misses += len(missing)
            found.update(await self._fetch(missing))
        return found

    async def get_within(self, rids: list[int], budget: int) -> tuple[dict[int, bytes], int]:
        """Documents of the longest prefix of rids whose documents fit in budget bytes.

        Returns them and the prefix's length (at least 1 when rids is not empty, so
        one message larger than the budget still goes out alone). Sizes of documents
        not cached are read first (the engines know a stored document's length without
        loading it), so documents past the budget are never read into memory.
        """
        cache = self._cache
        missing = [rid for rid in rids if rid not in cache]
        sizes = await self._sizes(missing) if missing else {}
        total = n = 0
        for rid in rids:
            doc = cache.get(rid)
            size = len(doc) if doc is not None else sizes.get(rid, 0)
            if n and total + size > budget:
                break
            total += size
            n += 1
        return await self.get(rids[:n]), n

    @abc.abstractmethod
    async def _fetch(self, rids: list[int]) -> dict[int, bytes]:
        """Stored documents by id, from the engine."""

    @abc.abstractmethod
    async def _sizes(self, rids: list[int]) -> dict[int, int]:
        """Stored documents' lengths by id, from the engine, without reading them."""


class Bodies(DocumentCache):
    """SQLite: misses are read on one reader thread."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ferry-store-reader")

    async def _fetch(self, rids: list[int]) -> dict[int, bytes]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._read, rids)

    async def _sizes(self, rids: list[int]) -> dict[int, int]:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._read, rids, "length(doc)")

    def _read(self, rids: list[int], column: str = "doc") -> dict[int, Any]:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self._path)
        out: dict[int, Any] = {}
        for i in range(0, len(rids), _CHUNK):
            chunk = rids[i:i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for rid, value in conn.execute(
                f"SELECT id, {column} FROM messages WHERE id IN ({marks}) AND doc IS NOT NULL",
                chunk,
            ):
                out[rid] = value
        return out

    def close(self) -> None:
        def _close() -> None:
            conn = getattr(self._local, "conn", None)
            if conn is not None:
                conn.close()

        self._pool.submit(_close).result()
        self._pool.shutdown(wait=True)
