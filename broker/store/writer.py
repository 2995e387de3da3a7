"""The broker's side of the committer process: futures in, durable writes out.

`submit` queues a request's `Writes`; everything queued within one turn of
the event loop goes to the committer as one frame, without blocking (a
non-blocking pipe, the loop's writer callback for what does not fit). Each
answer names how many frames one commit made durable; their futures resolve
in order. Nothing here runs on another thread.

The first failure is the last: a failed commit (the committer then exits
without committing anything sent after it) or a committer gone fails every
write still waiting and every later one, and `on_failure` tells the broker,
which must stop (its memory holds writes the store never will). A committer
that is gone may have committed what it was sent before it went: those
writes fail with OutcomeUnknownError, the rest (rolled back, or never sent)
with StoreError.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable

from ferry.broker.core import Writes
from ferry.broker.store.applying import Wire, to_wire
from ferry.broker.store.checkpoints import CHECKPOINT_S
from ferry.broker.store.frames import Decoder, encode, encode_parts

log = logging.getLogger("ferry.broker.store")

PIPE_BYTES = 1 << 20  # Linux grows a pipe to this on request: fewer partial writes
_Fut = asyncio.Future[None]


class StoreError(Exception):
    """The store could not make a change durable: nothing of it happened (503)."""


class OutcomeUnknownError(StoreError):
    """The store went away while committing the change: it may or may not be durable.

    Not a 503 (that says nothing happened): the answer says the outcome is unknown,
    and a publish retried with its dedup ids, or a read after the restart, tells.
    """


class Writer:
    def __init__(self, path: str, loop: asyncio.AbstractEventLoop, keep_fds: tuple[int, ...] = (),
                 log_level: str = "info", checkpoint_s: float = CHECKPOINT_S) -> None:
        self._path = path
        self._loop = loop
        self._keep_fds = keep_fds
        self._log_level = log_level
        self._checkpoint_s = checkpoint_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._wfd = self._rfd = -1
        self._queued: list[Wire] = []
        self._queued_futs: list[_Fut] = []
        self._sent: collections.deque[list[_Fut]] = collections.deque()  # per frame, in order
        self._out = bytearray()  # framed bytes the pipe has not taken yet
        self._scheduled = False
        self._writing = False
        self._decoder = Decoder()
        self.batches = 0
        self.items = 0
        self.failure: str | None = None  # why the committer is gone
        self.on_batch: Callable[[int, float], None] | None = None  # items, seconds
        self.on_failure: Callable[[str], None] | None = None  # why; called once

    @property
    def failed(self) -> bool:
        return self.failure is not None

    def start(self) -> None:
        argv = [sys.executable, "-m", "ferry.broker.store.committer", self._path, self._log_level,
                str(self._checkpoint_s)]
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=self._keep_fds
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._wfd, self._rfd = self._proc.stdin.fileno(), self._proc.stdout.fileno()
        for fd in (self._wfd, self._rfd):
            os.set_blocking(fd, False)
            with contextlib.suppress(OSError):  # not Linux, or above the system's limit
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._loop.add_reader(self._rfd, self._on_answers)

    @property
    def pid(self) -> int | None:
        """The committer process (None before start and after stop)."""
        return None if self._proc is None else self._proc.pid

    def submit(self, writes: Writes, wait: bool = True) -> _Fut | None:
        fut = self._loop.create_future() if wait else None
        if self.failure is not None:
            if fut is not None:
                fut.set_exception(StoreError(self.failure))
            return fut
        self._queued.append(to_wire(writes.ops, writes.totals, writes.group_totals))
        if fut is not None:
            self._queued_futs.append(fut)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._send)
        return fut

    def _send(self) -> None:
        self._scheduled = False
        if not self._queued:
            return
        header, data = encode_parts(self._queued)
        self._sent.append(self._queued_futs)
        self._queued, self._queued_futs = [], []
        if self._out:
            self._out += header
            self._out += data
            return
        try:
            n = os.writev(self._wfd, (header, data))
        except BlockingIOError:
            n = 0
        except OSError as e:
            why = f"cannot write to the committer: {e}"
            resolve(self._sent.pop(), StoreError(f"{why} (not sent)"))  # none of it went out
            self._fail(why)
            return
        if n < len(header) + len(data):
            self._out += header[n:]
            self._out += memoryview(data)[max(0, n - len(header)):]
            if not self._writing:
                self._writing = True
                self._loop.add_writer(self._wfd, self._on_writable)

    def _on_writable(self) -> None:
        try:
            n = os.write(self._wfd, self._out)
        except BlockingIOError:
            return
        except OSError as e:
            self._fail(f"cannot write to the committer: {e}")
            return
        del self._out[:n]
        if not self._out:
            self._writing = False
            self._loop.remove_writer(self._wfd)

    def _on_answers(self) -> None:
        try:
            data = os.read(self._rfd, 65536)
        except BlockingIOError:
            return
        if not data:
            self._fail("the store's committer process has exited")
            return
        self._answered(data)

    def _answered(self, data: bytes) -> None:
        for frames, error, seconds, items in self._decoder.feed(data):
            if self.failure is not None:
                return
            self.batches += 1
            self.items += items
            if self.on_batch is not None:
                self.on_batch(items, seconds)
            exc = None if error is None else StoreError(error)
            for _ in range(frames):
                resolve(self._sent.popleft(), exc)
            if error is not None:
                self._fail(f"a commit failed: {error}", sent_unknown=False)

    def _fail(self, why: str, sent_unknown: bool = True) -> None:
        """Nothing can become durable any more: fail what waits, and tell the broker.

        sent_unknown: the committer may have committed frames it was sent (it is gone);
        False after it answered a failed commit, since it then commits nothing more.
        """
        first = self.failure is None
        if first:
            log.error("store failing", extra={"reason": why})
            self.failure = why
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._rfd)
        if self._writing:
            self._writing = False
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_writer(self._wfd)
        self._out.clear()
        exc = StoreError(self.failure)
        sent = OutcomeUnknownError(self.failure) if sent_unknown else exc
        while self._sent:
            resolve(self._sent.popleft(), sent)
        resolve(self._queued_futs, exc)
        self._queued, self._queued_futs = [], []
        if first and self.on_failure is not None:
            self.on_failure(why)

    def stop(self, timeout_s: float = 60.0) -> None:
        """Hand over everything queued, let the committer make it durable, and end it."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            return
        self._proc = None
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._rfd)
        if self._writing:
            self._loop.remove_writer(self._wfd)
        self._scheduled = False
        if self._queued:
            self._out += encode(self._queued)
            self._sent.append(self._queued_futs)
            self._queued, self._queued_futs = [], []
        os.set_blocking(self._wfd, True)
        os.set_blocking(self._rfd, True)
        with contextlib.suppress(OSError):
            view = memoryview(self._out)
            while view:
                view = view[os.write(self._wfd, view):]
        self._out.clear()
        proc.stdin.close()  # end of input: the committer commits what it read, then exits
        while data := os.read(self._rfd, 65536):
            self._answered(data)
        proc.stdout.close()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.error("store committer did not stop; killing it")
            proc.kill()
            proc.wait()
        if self._sent:
            self._fail("the store's committer stopped before answering")


def resolve(futures: list[_Fut], error: BaseException | None) -> None:
    for f in futures:
        if f.done():
            continue
        if error is None:
            f.set_result(None)
        else:
            f.set_exception(error)


def wait_for_lock(fd: int, timeout_s: float, what: str) -> None:
    """Take the data dir's exclusive lock, waiting while an earlier broker's committer ends."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise StoreError(f"{what} is in use by another ferry-broker") from None
            time.sleep(0.05)
