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

from ferry.broker.store.schema import connect

DEFAULT_CACHE_BYTES = 32 * 1024 * 1024
_CHUNK = 500  # SQLite's default limit of host parameters is far above this


class DocumentCache(abc.ABC):
    """The cache; each engine reads what it misses (`_fetch`)."""

    def __init__(self, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self._cache: dict[int, bytes] = {}
        self._cache_bytes = 0
        self._budget = cache_bytes
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

    @abc.abstractmethod
    async def _fetch(self, rids: list[int]) -> dict[int, bytes]:
        """Stored documents by id, from the engine."""

class Bodies(DocumentCache):
    """SQLite: misses are read on one reader thread."""

    def __init__(self, path: str, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        super().__init__(cache_bytes)
        self._path = path
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ferry-store-reader")

    async def _fetch(self, rids: list[int]) -> dict[int, bytes]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._read, rids)

    def _read(self, rids: list[int]) -> dict[int, bytes]:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self._path)
        out: dict[int, bytes] = {}
        for i in range(0, len(rids), _CHUNK):
            chunk = rids[i:i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for rid, doc in conn.execute(
                f"SELECT id, doc FROM messages WHERE id IN ({marks}) AND doc IS NOT NULL", chunk
            ):
                out[rid] = doc
        return out

    def close(self) -> None:
        def _close() -> None:
            conn = getattr(self._local, "conn", None)
            if conn is not None:
                conn.close()

        self._pool.submit(_close).result()
        self._pool.shutdown(wait=True)
