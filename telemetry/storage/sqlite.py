"""SQLite engine: the embedded default. One connection on one worker thread, WAL mode.

Several collector processes on one host may share the file (WAL + busy timeout);
collectors on several hosts need the PostgreSQL engine.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ferry.telemetry.storage import queries
from ferry.telemetry.storage.base import StorageError, Store, now_us
from ferry.telemetry.storage.records import (
    NewSample,
    gpu_tuples,
    sample_tuples,
    schema_sql,
)

T = TypeVar("T")
BUSY_TIMEOUT_MS = 30_000


class SqliteStore(Store):
    engine = "sqlite"
    placeholder = staticmethod(queries.qmark)

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._pool: ThreadPoolExecutor | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._db is None or self._pool is None:
            raise StorageError("SQLite store is not open")
        db = self._db
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, db)
        except sqlite3.Error as e:
            raise StorageError(f"SQLite {self.path}: {e}") from e

    async def open(self) -> None:
        if self._db is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")

        def connect() -> sqlite3.Connection:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            # FULL: a commit is on disk before write() returns, so acking after it is safe.
            db.execute("PRAGMA synchronous = FULL")
            db.executescript(schema_sql())
            return db

        try:
            self._db = await asyncio.get_running_loop().run_in_executor(self._pool, connect)
        except sqlite3.Error as e:
            self._pool.shutdown()
            self._pool = None
            raise StorageError(f"SQLite {self.path}: {e}") from e

    async def close(self) -> None:
        db, pool = self._db, self._pool
        self._db = self._pool = None
        if db is not None and pool is not None:
            await asyncio.get_running_loop().run_in_executor(pool, db.close)
        if pool is not None:
            pool.shutdown()

    async def write(self, samples: Sequence[NewSample]) -> int:
        if not samples:
            return 0
        batch = list(samples)
        stored = now_us()
        rows = sample_tuples(batch, stored)
        gpus = gpu_tuples(batch)
        insert = queries.insert_samples(self.placeholder)
        upsert = queries.upsert_gpu(self.placeholder, "max", "min")

        def tx(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            try:
                before = db.total_changes
                db.executemany(insert, rows)
                inserted = db.total_changes - before
                db.executemany(upsert, gpus)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return inserted

        return await self._run(tx)

    async def _fetch(self, sql: str, *args: object) -> list[Any]:
        return await self._run(lambda db: db.execute(sql, args).fetchall())
