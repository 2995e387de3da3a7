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

from ferry.broker.core import Kind, Writes
from ferry.broker.core.writes import Row
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
        # Checkpoints run on their own thread (Checkpointer), never inside a commit.
        conn.execute("PRAGMA wal_autocheckpoint=0")
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
            apply(conn, [writes for writes, _ in batch])
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


def _resolve(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for f in futures:
        if f.done():
            continue
        if error is None:
            f.set_result(None)
        else:
            f.set_exception(StoreError(str(error)))


# Python's sqlite3 releases the GIL around every statement step, and executemany steps
# once per row: with the event loop busy, each re-acquire can wait a whole switch
# interval, so a commit of a few hundred rows took hundreds of milliseconds. Frequent
# kinds are therefore written as one multi-row statement per chunk of rows.
_INSERT = {
    # A tombstone keeps the dedup id answering until the window passes; PURGE_BELOW drops it.
    Kind.MESSAGE: ("INSERT OR IGNORE INTO messages VALUES ", 7),
    Kind.ACK: ("INSERT OR IGNORE INTO acks VALUES ", 2),
    Kind.COUNT: ("INSERT OR REPLACE INTO counts VALUES ", 4),
    Kind.DEAD: ("INSERT OR REPLACE INTO dead VALUES ", 5),
}
_SQL = {
    # The row's priority decides its ready list when a restart reads it back.
    Kind.PRIORITY: "UPDATE messages SET priority=?, doc=? WHERE id=? AND doc IS NOT NULL",
    Kind.COUNT_DELETED: "DELETE FROM counts WHERE gid=? AND seq=?",
    Kind.DEAD_DELETED: "DELETE FROM dead WHERE gid=? AND seq=?",
    Kind.QUEUE: "INSERT INTO queues(id, name, settings, created_ms) VALUES (?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET settings=excluded.settings",
    Kind.GROUP: "INSERT INTO groups(id, qid, name, settings, start_seq) VALUES (?,?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET settings=excluded.settings",
}
_NEXT_ID = "INSERT INTO meta VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v=max(v, excluded.v)"
# Chunks are powers of two up to this, so a few dozen statement texts cover every batch
# and stay in the connection's statement cache.
_MAX_CHUNK = 256


def apply(conn: sqlite3.Connection, batch: list[Writes]) -> None:
    """Every intent of the batch in order; runs of one kind become few statements."""
    run_kind: Kind | None = None
    run: list[Row] = []
    totals: dict[int, tuple[int, int]] = {}
    group_totals: dict[int, int] = {}
    for w in batch:
        for kind, rows in w.ops:
            if kind is run_kind:
                run.extend(rows)
                continue
            if run_kind is not None:
                _apply_run(conn, run_kind, run)
            run_kind, run = kind, list(rows)
        totals.update(w.totals)
        group_totals.update(w.group_totals)
    if run_kind is not None:
        _apply_run(conn, run_kind, run)
    if totals:
        conn.executemany(
            "UPDATE queues SET published_total=?, next_seq=? WHERE id=?",
            [(p, n, qid) for qid, (p, n) in totals.items()],
        )
    if group_totals:
        conn.executemany(
            "UPDATE groups SET acked_total=? WHERE id=?",
            [(a, gid) for gid, a in group_totals.items()],
        )


def _chunks(rows: list[Row]) -> list[list[Row]]:
    """rows cut into chunks whose sizes are powers of two (at most _MAX_CHUNK)."""
    out, i, n = [], 0, len(rows)
    while i < n:
        size = min(_MAX_CHUNK, 1 << ((n - i).bit_length() - 1))
        out.append(rows[i:i + size])
        i += size
    return out


def _insert(conn: sqlite3.Connection, head: str, width: int, rows: list[Row]) -> None:
    one = "(" + ",".join("?" * width) + ")"
    for chunk in _chunks(rows):
        conn.execute(head + ",".join([one] * len(chunk)), [v for row in chunk for v in row])


def _consumed(conn: sqlite3.Connection, rows: list[Row]) -> None:
    for chunk in _chunks(rows):
        marks = ",".join("?" * len(chunk))
        conn.execute(f"UPDATE messages SET doc=NULL WHERE id IN ({marks})", [r[0] for r in chunk])


def _apply_run(conn: sqlite3.Connection, kind: Kind, rows: list[Row]) -> None:
    insert = _INSERT.get(kind)
    if insert is not None:
        _insert(conn, *insert, rows)
        return
    if kind is Kind.CONSUMED:
        _consumed(conn, rows)
        return
    sql = _SQL.get(kind)
    if sql is not None:
        conn.executemany(sql, rows)
        if kind is Kind.QUEUE:
            conn.executemany(_NEXT_ID, [("next_qid", r[0] + 1) for r in rows])
        elif kind is Kind.GROUP:
            conn.executemany(_NEXT_ID, [("next_gid", r[0] + 1) for r in rows])
        return
    ex = conn.execute
    for row in rows:
        if kind is Kind.PURGE_BELOW:
            qid, below = row
            ex("DELETE FROM messages WHERE id >= ? AND id < ?", (qid * _Q, below))
            _drop_group_rows_below(conn, qid, below & (_Q - 1))
        elif kind is Kind.GROUP_DELETED:
            _drop_group(conn, row[0])
        elif kind is Kind.QUEUE_DELETED:
            qid = row[0]
            for (gid,) in ex("SELECT id FROM groups WHERE qid=?", (qid,)).fetchall():
                _drop_group(conn, gid)
            ex("DELETE FROM messages WHERE id >= ? AND id < ?", (qid * _Q, (qid + 1) * _Q))
            ex("DELETE FROM queues WHERE id=?", (qid,))


def _drop_group(conn: sqlite3.Connection, gid: int) -> None:
    for table in ("acks", "counts", "dead"):
        conn.execute(f"DELETE FROM {table} WHERE gid=?", (gid,))
    conn.execute("DELETE FROM groups WHERE id=?", (gid,))


def _drop_group_rows_below(conn: sqlite3.Connection, qid: int, seq: int) -> None:
    for (gid,) in conn.execute("SELECT id FROM groups WHERE qid=?", (qid,)).fetchall():
        for table in ("acks", "counts", "dead"):
            conn.execute(f"DELETE FROM {table} WHERE gid=? AND seq<?", (gid, seq))
