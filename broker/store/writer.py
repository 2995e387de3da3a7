"""The single writer thread: group commit of many requests in one transaction.

Requests enqueue their `Writes` and get a future; the thread drains whatever
is queued, applies it all in one transaction, commits (one fsync for the lot)
and resolves every future of the batch with one `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable

from ferry.broker.core import Writes
from ferry.broker.store.schema import connect

log = logging.getLogger("ferry.broker.store")

MAX_BATCH = 4096
_Q = 1 << 40


class StoreError(Exception):
    """The store could not make a change durable."""


_Item = tuple[Writes, asyncio.Future[None] | None]


class Writer:
    def __init__(self, path: str, loop: asyncio.AbstractEventLoop) -> None:
        self._path = path
        self._loop = loop
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ferry-store-writer", daemon=True)
        self.batches = 0
        self.items = 0
        self.failed = False
        self.on_batch: Callable[[int, float], None] | None = None  # items, seconds

    def start(self) -> None:
        self._thread.start()

    def submit(self, writes: Writes, wait: bool = True) -> asyncio.Future[None] | None:
        fut = self._loop.create_future() if wait else None
        self._queue.put((writes, fut))
        return fut

    def stop(self) -> None:
        """Write out everything queued, then end the thread."""
        if not self._thread.is_alive():
            return
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        conn = connect(self._path)
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                self._commit(conn, batch)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Item]) -> None:
        t0 = time.perf_counter()
        error: BaseException | None = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            for writes, _ in batch:
                apply(conn, writes)
            conn.execute("COMMIT")
        except Exception as e:  # disk full, I/O error: fail the batch, keep serving
            log.exception("store commit failed")
            error = e
            self.failed = True
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        self.batches += 1
        self.items += len(batch)
        if self.on_batch is not None:
            self.on_batch(len(batch), time.perf_counter() - t0)
        futures = [f for _, f in batch if f is not None]
        if futures:
            self._loop.call_soon_threadsafe(_resolve, futures, error)


def _resolve(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for f in futures:
        if f.done():
            continue
        if error is None:
            f.set_result(None)
        else:
            f.set_exception(StoreError(str(error)))


def apply(conn: sqlite3.Connection, w: Writes) -> None:  # noqa: C901 - one branch per table
    ex, many = conn.execute, conn.executemany
    for qid, name, settings, created in w.queues:
        ex(
            "INSERT INTO queues(id, name, settings, created_ms) VALUES (?,?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET settings=excluded.settings",
            (qid, name, settings, created),
        )
        ex(
            "INSERT INTO meta VALUES ('next_qid', ?) ON CONFLICT(k) DO UPDATE "
            "SET v=max(v, excluded.v)", (qid + 1,),
        )
    for gid, qid, name, settings, start in w.groups:
        ex(
            "INSERT INTO groups(id, qid, name, settings, start_seq) VALUES (?,?,?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET settings=excluded.settings",
            (gid, qid, name, settings, start),
        )
        ex(
            "INSERT INTO meta VALUES ('next_gid', ?) ON CONFLICT(k) DO UPDATE "
            "SET v=max(v, excluded.v)", (gid + 1,),
        )
    if w.messages:
        many("INSERT OR IGNORE INTO messages VALUES (?,?,?,?,?,?,?)", w.messages)
    if w.deleted:
        # A tombstone keeps the dedup id answering until the window passes; compaction purges.
        many("UPDATE messages SET doc=NULL WHERE id=?", [(r,) for r in w.deleted])
    for qid, below in w.deleted_below:
        ex("DELETE FROM messages WHERE id >= ? AND id < ?", (qid * _Q, below))
        _drop_group_rows_below(conn, qid, below & (_Q - 1))
    if w.acks:
        many("INSERT OR IGNORE INTO acks VALUES (?,?)", w.acks)
    if w.counts:
        many("INSERT OR REPLACE INTO counts VALUES (?,?,?,?)", w.counts)
    if w.counts_deleted:
        many("DELETE FROM counts WHERE gid=? AND seq=?", w.counts_deleted)
    if w.dead:
        many("INSERT OR REPLACE INTO dead VALUES (?,?,?,?,?)", w.dead)
    if w.dead_deleted:
        many("DELETE FROM dead WHERE gid=? AND seq=?", w.dead_deleted)
    for qid, (published, next_seq) in w.totals.items():
        ex("UPDATE queues SET published_total=?, next_seq=? WHERE id=?", (published, next_seq, qid))
    for gid, acked in w.group_totals.items():
        ex("UPDATE groups SET acked_total=? WHERE id=?", (acked, gid))
    for gid in w.groups_deleted:
        for table in ("acks", "counts", "dead"):
            ex(f"DELETE FROM {table} WHERE gid=?", (gid,))
        ex("DELETE FROM groups WHERE id=?", (gid,))
    for qid in w.queues_deleted:
        for (gid,) in ex("SELECT id FROM groups WHERE qid=?", (qid,)).fetchall():
            for table in ("acks", "counts", "dead"):
                ex(f"DELETE FROM {table} WHERE gid=?", (gid,))
        ex("DELETE FROM groups WHERE qid=?", (qid,))
        ex("DELETE FROM messages WHERE id >= ? AND id < ?", (qid * _Q, (qid + 1) * _Q))
        ex("DELETE FROM queues WHERE id=?", (qid,))


def _drop_group_rows_below(conn: sqlite3.Connection, qid: int, seq: int) -> None:
    for (gid,) in conn.execute("SELECT id FROM groups WHERE qid=?", (qid,)).fetchall():
        for table in ("acks", "counts", "dead"):
            conn.execute(f"DELETE FROM {table} WHERE gid=? AND seq<?", (gid, seq))
