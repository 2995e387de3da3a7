"""Durability: SQLite in WAL mode, one writer thread with group commit."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

from ferry.broker.core import Broker, DedupIndex, Restored
from ferry.broker.store.bodies import Bodies
from ferry.broker.store.loading import CHUNK, load, load_all, read_chunk, read_dedup
from ferry.broker.store.schema import connect, create
from ferry.broker.store.writer import Checkpointer, StoreError, Writer

DB_NAME = "ferry.db"

__all__ = ["CHUNK", "Bodies", "Store", "StoreError", "Writer"]


class Store:
    """One data directory: the database, its writer thread and the document reader."""

    def __init__(self, data_dir: str | os.PathLike[str], loop: asyncio.AbstractEventLoop) -> None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        self.path = str(Path(data_dir) / DB_NAME)
        self.writer = Writer(self.path, loop)
        self.checkpointer = Checkpointer(self.path)
        self.bodies = Bodies(self.path)
        self._loader: sqlite3.Connection | None = None

    def load(self, now: int) -> Broker:
        """The whole state, every message read back before this returns."""
        conn = connect(self.path)
        try:
            create(conn)
            return load_all(conn, now)
        finally:
            conn.close()

    def open(self, now: int) -> Broker:
        """Queues and groups only; stream the messages in with `read_chunk`."""
        conn = connect(self.path)
        try:
            create(conn)
            return load(conn, now)
        finally:
            conn.close()

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
        conn = connect(self.path)
        try:
            return {qid: read_dedup(conn, qid, now - ms) for qid, ms in windows.items()}
        finally:
            conn.close()

    def start(self) -> None:
        self.writer.start()
        self.checkpointer.start()

    def close(self) -> None:
        self.loaded()
        self.writer.stop()
        self.checkpointer.stop()
        self.bodies.close()
