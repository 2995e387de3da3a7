"""WAL checkpoints on their own thread, so commits never wait for one."""

from __future__ import annotations

import logging
import sqlite3
import threading

from ferry.broker.store.schema import connect

log = logging.getLogger("ferry.broker.store")


CHECKPOINT_S = 0.5  # between the checkpointer's passes
# A WAL longer than this (4 KiB pages: 16 MiB) gets the committer's help to start over.
CATCH_UP_FRAMES = 4096


class Checkpointer:
    """Copies the WAL into the database on its own thread, so commits never wait for it.

    PASSIVE checkpoints do not block the writer. SQLite starts the WAL over from
    its beginning only when a checkpoint has copied every frame in it, and under
    steady load the writer always appends more while this thread copies: the WAL
    grew by 2 GB a minute. So once a pass has copied all it saw of a long WAL,
    `catch_up` is set, and the committer, between two commits, checkpoints the few
    frames appended meanwhile; its next transaction then restarts the WAL.
    """

    def __init__(self, path: str, every_s: float = CHECKPOINT_S) -> None:
        self._path = path
        self._every_s = every_s
        self.catch_up = threading.Event()
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
                    busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if not busy and copied == frames >= CATCH_UP_FRAMES:
                        self.catch_up.set()
                except sqlite3.Error:
                    log.exception("checkpoint failed (the next one retries)")
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error:  # a full disk: the next start checkpoints
                log.exception("final checkpoint failed")
        finally:
            conn.close()
