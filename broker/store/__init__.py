"""Durability: SQLite in WAL mode, one writer thread with group commit."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from ferry.broker.core import Broker
from ferry.broker.store.bodies import Bodies
from ferry.broker.store.loading import load
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

    def start(self) -> None:
        self.writer.start()

    def close(self) -> None:
        self.writer.stop()
        self.bodies.close()
