"""Durability: SQLite in WAL mode, one writer thread with group commit."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from ferry.broker.core import Broker, DedupIndex
from ferry.broker.store.bodies import Bodies
from ferry.broker.store.loading import load, read_dedup
from ferry.broker.store.schema import connect, create
from ferry.broker.store.writer import StoreError, Writer

DB_NAME = "ferry.db"

__all__ = ["Bodies", "Store", "StoreError", "Writer"]


class Store:
    """One data directory: the database, its writer thread and the document reader."""

    def __init__(self, data_dir: str | os.PathLike[str], loop: asyncio.AbstractEventLoop) -> None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        self.path = str(Path(data_dir) / DB_NAME)
        self.writer = Writer(self.path, loop)
        self.bodies = Bodies(self.path)

    def load(self, now: int) -> Broker:
        conn = connect(self.path)
        try:
            create(conn)
            return load(conn, now)
        finally:
            conn.close()

    def read_dedup(self, windows: dict[int, int], now: int) -> dict[int, DedupIndex]:
        """Stored dedup ids per queue id, each inside its window (ms); runs in a thread."""
        conn = connect(self.path)
        try:
            return {qid: read_dedup(conn, qid, now - ms) for qid, ms in windows.items()}
        finally:
            conn.close()

    def start(self) -> None:
        self.writer.start()

    def close(self) -> None:
        self.writer.stop()
        self.bodies.close()
