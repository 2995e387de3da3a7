"""WAL checkpoints on their own thread, so commits never wait for one."""

from __future__ import annotations

import logging
import sqlite3
import threading

from ferry.broker.store.schema import connect

log = logging.getLogger("ferry.broker.store")


class Checkpointer:
    """Copies the WAL into the database on its own thread, so commits never wait for it.

    PASSIVE checkpoints do not block the writer; once one has caught up, the
    writer's next transaction starts the WAL over from its beginning.
    """

    def __init__(self, path: str, every_s: float = 0.5) -> None:
        self._path = path
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="ferry-store-checkpointer", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()

    def _run(self) -> None:
        conn = connect(self._path)
        try:
            while not self._stop.wait(self._every_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    log.exception("checkpoint failed (the next one retries)")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            conn.close()
