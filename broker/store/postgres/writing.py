"""Group commit on PostgreSQL: every request queued while a transaction runs shares the next.

One task owns one connection. It takes everything submitted since its last
commit, and in one transaction checks the fence (the leader row's epoch, read
FOR SHARE, so a takeover's epoch raise waits for this transaction and every
later one sees it), applies the writes and commits; only then do the requests'
futures resolve. With synchronous standbys configured on the server, COMMIT
returns once they hold the transaction too.

When a transaction fails the core already holds its changes, so the engine
reports itself lost and the broker fail-stops and starts over. What its
requests are told depends on where it failed: before COMMIT (fenced, a write
refused, the connection gone) PostgreSQL rolled it back, so nothing happened
(StoreError, 503); during COMMIT (the connection lost, the backend terminated
while it waited for the synchronous standby) it may have committed, so the
outcome is unknown (OutcomeUnknownError). So is a COMMIT that returned with a
warning: PostgreSQL warns when a wait for the synchronous standby was cancelled
and the transaction committed locally only, not replicated.
Requests queued behind the failed transaction were never sent: StoreError.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from ferry.broker.core import Writes
from ferry.broker.store.postgres.applying import apply
from ferry.broker.store.postgres.schema import ERRORS
from ferry.broker.store.writer import OutcomeUnknownError, StoreError, resolve

log = logging.getLogger("ferry.broker.store")

FENCE = "SELECT epoch FROM leader WHERE id = 1 FOR SHARE"
_Fut = asyncio.Future[None]


class FencedError(StoreError):
    """Another broker took over the queue set: this one must not write again."""


class PgWriter:
    def __init__(self, on_lost: Callable[[str], None]) -> None:
        self._on_lost = on_lost
        self._conn: asyncpg.Connection[Any] | None = None
        self._epoch = 0
        self._queued: list[Writes] = []
        self._futs: list[_Fut] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0
        self.failure: str | None = None  # why this writer stopped for good
        self.on_batch: Callable[[int, float], None] | None = None

    @property
    def failed(self) -> bool:
        return self.failure is not None

    def start(self, conn: asyncpg.Connection[Any], epoch: int) -> None:
        self._conn, self._epoch = conn, epoch
        self._task = asyncio.create_task(self._run(conn), name="ferry-store-pg-writer")

    def submit(self, writes: Writes, wait: bool = True) -> _Fut | None:
        fut = asyncio.get_running_loop().create_future() if wait else None
        if self.failure is not None or self._closing:
            if fut is not None:
                fut.set_exception(StoreError(self.failure or "the store is closing"))
            return fut
        self._queued.append(writes)
        if fut is not None:
            self._futs.append(fut)
        self._wake.set()
        return fut

    async def _run(self, conn: asyncpg.Connection[Any]) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._queued:
                if self._closing:
                    return
                continue
            batch, futs = self._queued, self._futs
            self._queued, self._futs = [], []
            t0 = time.perf_counter()
            error = await self._commit(conn, batch)
            if error is not None:
                self._fail(f"commit failed: {error}")
                resolve(futs, error)
                resolve(self._futs, StoreError(str(error)))
                self._queued, self._futs = [], []
                return
            seconds = time.perf_counter() - t0
            self.batches += 1
            self.items += len(batch)
            if self.on_batch is not None:
                self.on_batch(len(batch), seconds)
            resolve(futs, None)
            if self._queued or self._closing:
                self._wake.set()

    async def _commit(
        self, conn: asyncpg.Connection[Any], batch: list[Writes]
    ) -> StoreError | None:
        """One transaction for the batch; the error its requests get if it failed."""
        tr = conn.transaction()
        try:
            await tr.start()
            epoch = await conn.fetchval(FENCE)
            if epoch != self._epoch:
                raise FencedError(
                    f"fenced: the queue set's epoch is {epoch}, this leader's {self._epoch}"
                )
            await apply(conn, batch)
        except (*ERRORS, StoreError) as e:
            with contextlib.suppress(*ERRORS):
                await tr.rollback()
            return e if isinstance(e, StoreError) else StoreError(f"rolled back: {e}")
        warnings: list[str] = []

        def warned(_: object, message: asyncpg.PostgresLogMessage) -> None:
            if message.severity_en == "WARNING":
                warnings.append(f"{message.message} {message.detail or ''}".strip())

        conn.add_log_listener(warned)
        try:
            await tr.commit()
        except ERRORS as e:
            why = "; ".join([str(e) or type(e).__name__, *warnings])
            return OutcomeUnknownError(f"the connection failed during COMMIT: {why}")
        finally:
            conn.remove_log_listener(warned)
        if warnings:
            return OutcomeUnknownError(f"COMMIT warned: {'; '.join(warnings)}")
        return None

    def _fail(self, why: str) -> None:
        log.error("store failing", extra={"reason": why})
        self.failure = why
        self._on_lost(why)

    async def stop(self) -> None:
        """Commit everything submitted so far, then end the task."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
