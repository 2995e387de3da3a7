"""The committer: a child process that makes the broker's writes durable (group commit).

Why a process and not a thread: Python's sqlite3 releases the GIL around every
statement and the fsync, and a thread then queues behind the busy event loop
to get it back, for up to a switch interval each time; measured, a commit of
100 messages took ~2.7 ms inside the broker against ~0.8 ms alone. Here the
SQLite work runs under its own GIL, and the broker only pays for marshal and
a pipe write.

Protocol (frames.py): the broker writes frames, each a list of `Wire` writes;
this process reads whatever frames have arrived, applies them all in one
transaction, commits (one fsync), and answers `(frames, error, seconds,
writes)`. At end of input it commits what it has read and exits, so writes
sent before the broker died still land; the data dir's lock (held by both
processes) keeps a restarted broker from loading until this one is gone.

A commit that fails is the last: this process answers the error and exits
(status 1) without committing anything sent after it. The broker has already
applied those writes to its memory, so it fail-stops too (see Runtime.fail),
and what a restart reads back is exactly what was answered as durable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sqlite3
import sys
import time

from ferry.broker.malloc import release_large_buffers
from ferry.broker.store.applying import Wire, apply
from ferry.broker.store.checkpoints import CHECKPOINT_S, Checkpointer
from ferry.broker.store.frames import Decoder, encode
from ferry.broker.store.schema import connect
from ferry.kit import logs

log = logging.getLogger("ferry.broker.store")

READ_BYTES = 1 << 20


Answer = tuple[int, str | None, float, int]  # frames, error, seconds, writes


def commit(conn: sqlite3.Connection, frames: list[list[Wire]]) -> Answer:
    t0 = time.perf_counter()
    batch = [w for frame in frames for w in frame]
    error = None
    try:
        conn.execute("BEGIN IMMEDIATE")
        apply(conn, batch)
        conn.execute("COMMIT")
    except Exception as e:  # disk full, I/O error: fail the batch (and stop: see serve)
        log.exception("store commit failed")
        error = str(e) or type(e).__name__
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
    return len(frames), error, time.perf_counter() - t0, len(batch)


def serve(
    conn: sqlite3.Connection, rfd: int, wfd: int, checkpointer: Checkpointer | None = None
) -> bool:
    """Commit frames until the input ends (True) or a commit fails (False)."""
    decoder = Decoder()
    # One buffer for every read: os.read allocated READ_BYTES each time, above the mmap
    # threshold (malloc.py), so each read faulted fresh pages in (1.2 faults per message
    # end to end at 4 KiB). Frames are decoded (copied out) before the next read.
    buf = bytearray(READ_BYTES)
    view = memoryview(buf)
    eof = False
    while not eof:
        frames: list[list[Wire]] = []
        # Block for the first frame, then take whatever else has already arrived.
        while not eof and not (frames and not select.select([rfd], [], [], 0)[0]):
            n = os.readv(rfd, [buf])
            if not n:
                eof = True
            frames.extend(decoder.feed(view[:n]))
        if frames:
            answer = commit(conn, frames)
            _write_all(wfd, encode(answer))
            if answer[1] is not None:
                return False
            if checkpointer is not None and checkpointer.catch_up.is_set():
                checkpointer.catch_up.clear()
                _catch_up(conn)
    return True


def _catch_up(conn: sqlite3.Connection) -> None:
    """Checkpoint what was appended since the checkpointer's last pass (see Checkpointer)."""
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error:  # the checkpointer's next pass tries again
        log.exception("catch-up checkpoint failed")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def main(argv: list[str]) -> int:
    # A SIGTERM or Ctrl-C to the process group is the broker's to handle: it drains, hands
    # over its last writes and closes the pipe, which is what ends this process.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logs.setup("ferry-broker-committer", argv[2] if len(argv) > 2 else "info")
    release_large_buffers()
    path = argv[1]
    conn = connect(path)
    # Checkpoints run on their own thread, never inside a commit.
    conn.execute("PRAGMA wal_autocheckpoint=0")
    checkpointer = Checkpointer(path, float(argv[3]) if len(argv) > 3 else CHECKPOINT_S)
    checkpointer.start()
    ok = True
    try:
        ok = serve(conn, sys.stdin.fileno(), sys.stdout.fileno(), checkpointer)
    except BrokenPipeError:  # the broker is gone; everything read has been committed
        pass
    finally:
        conn.close()
        checkpointer.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
