"""Durability: two engines behind one protocol (engines.Engine).

Embedded (default): SQLite in WAL mode, group commit in a committer child process
(this module). PostgreSQL: ferry.broker.store.postgres.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from contextlib import closing, suppress
from pathlib import Path

from ferry.broker.core import Broker, DedupIndex, Restored
from ferry.broker.store.bodies import Bodies
from ferry.broker.store.checkpoints import CHECKPOINT_S
from ferry.broker.store.engines import Engine, Leader, Loss
from ferry.broker.store.loading import CHUNK, load, load_all, read_chunk, read_dedup
from ferry.broker.store.schema import connect, create
from ferry.broker.store.writer import OutcomeUnknownError, StoreError, Writer, wait_for_lock

DB_NAME = "ferry.db"
LOCK_NAME = "ferry.lock"
LOCK_WAIT_S = 30.0  # a previous broker's committer finishes its last commit well within this

__all__ = ["CHUNK", "Bodies", "Engine", "Leader", "OutcomeUnknownError", "Store", "StoreError",
           "Writer"]


class Store:
    """One data directory: the database, its committer process and the document reader.

    The only broker on its data dir (the lock taken here), so always the leader.
    """

    name = "sqlite"

    def __init__(
        self, data_dir: str | os.PathLike[str], loop: asyncio.AbstractEventLoop,
        log_level: str = "info", checkpoint_s: float = CHECKPOINT_S,
    ) -> None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        self.path = str(Path(data_dir) / DB_NAME)
        # One broker per data dir; the committer inherits the lock, so a restarted broker
        # waits here until the last process that could still write is gone.
        self._lock = os.open(Path(data_dir) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            wait_for_lock(self._lock, LOCK_WAIT_S, str(data_dir))
        except BaseException:
            os.close(self._lock)
            raise
        self.writer = Writer(
            self.path, loop, keep_fds=(self._lock,), log_level=log_level, checkpoint_s=checkpoint_s
        )
        self.bodies = Bodies(self.path)
        self._loader: sqlite3.Connection | None = None
        self._lost = Loss()
        self.writer.on_failure = self._lost

    def load(self, now: int) -> Broker:
        """The whole state, every message read back before this returns."""
        with closing(connect(self.path)) as conn:
            create(conn)
            return load_all(conn, now)

    def open(self, now: int) -> Broker:
        """Queues and groups only; stream the messages in with `read_chunk`."""
        with closing(connect(self.path)) as conn:
            create(conn)
            return load(conn, now)

    def read_chunk(self, qid: int, lo_seq: int, hi_seq: int) -> Restored:
        """Stored messages of a queue in [lo_seq, hi_seq); called from one thread at a time."""
        if self._loader is None:
            self._loader = connect(self.path)
        return read_chunk(self._loader, qid, lo_seq, hi_seq)

    def loaded(self) -> None:
        if self._loader is not None:
            self._loader.close()
            self._loader = None

    def read_dedup(self, windows: dict[int, int], now: int) -> dict[int, DedupIndex]:
        """Stored dedup ids per queue id, each inside its window (ms); runs in a thread."""
        with closing(connect(self.path)) as conn:
            return {qid: read_dedup(conn, qid, now - ms) for qid, ms in windows.items()}

    def start(self) -> None:
        self.writer.start()

    # --- the Engine protocol ---------------------------------------------------------

    async def elect(self) -> None:
        """Nothing to wait for: the data dir's lock was taken when this store was made."""

    async def leader(self) -> Leader | None:
        return None

    async def restore(self, now: int) -> Broker:
        broker = self.open(now)
        self.start()
        return broker

    async def chunk(self, qid: int, lo_seq: int, hi_seq: int) -> Restored:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.read_chunk, qid, lo_seq, hi_seq)

    async def dedup(self, windows: dict[int, int], now: int) -> dict[int, DedupIndex]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.read_dedup, windows, now)

    def on_lost(self, listener: Callable[[str], None]) -> None:
        self._lost.subscribe(listener)

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        self.loaded()
        self.writer.stop()
        self.bodies.close()
        with suppress(OSError):
            os.close(self._lock)
