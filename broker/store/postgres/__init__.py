"""The PostgreSQL engine: queues that survive their broker's node (see electing.py).

Several brokers on one database and queue set (a PostgreSQL schema) elect one
leader; the others wait as standbys and take over when its lock frees.
Replication and database failover are PostgreSQL's: a multi-host URI with
target_session_attrs=read-write reaches whichever host is primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ferry.broker.core import Broker, DedupIndex, Restored
from ferry.broker.store.bodies import DocumentCache
from ferry.broker.store.engines import Leader, Loss
from ferry.broker.store.postgres import electing, loading
from ferry.broker.store.postgres.schema import (
    CONNECT_TIMEOUT_S,
    DEFAULT_SCHEMA,
    ERRORS,
    check_schema,
    connect,
    create,
)
from ferry.broker.store.postgres.writing import FencedError, PgWriter
from ferry.broker.store.writer import StoreError

log = logging.getLogger("ferry.broker.store")

RETRY_S = 1.0  # between attempts to reach the database

__all__ = ["DEFAULT_SCHEMA", "FencedError", "PgStore"]


class PgBodies(DocumentCache):
    def __init__(self, store: PgStore) -> None:
        super().__init__()
        self._store = store

    async def _fetch(self, rids: list[int]) -> dict[int, bytes]:
        pool = await self._store.pool()
        rows = await pool.fetch("SELECT id, doc FROM messages WHERE id = ANY($1::bigint[])", rids)
        return {r[0]: r[1] for r in rows}

    async def _sizes(self, rids: list[int]) -> dict[int, int]:
        pool = await self._store.pool()
        rows = await pool.fetch(
            "SELECT id, octet_length(doc) FROM messages WHERE id = ANY($1::bigint[])", rids)
        return {r[0]: r[1] for r in rows}

class PgStore:
    name = "postgres"

    def __init__(self, dsn: str, schema: str = DEFAULT_SCHEMA, holder: str = "") -> None:
        self.dsn = dsn
        self.schema = check_schema(schema)
        self.holder = holder
        self._lost = Loss()
        self.writer = PgWriter(self._lost)
        self.bodies = PgBodies(self)
        self._pool: asyncpg.Pool[Any] | None = None
        self._lock_conn: asyncpg.Connection[Any] | None = None
        self._writer_conn: asyncpg.Connection[Any] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.epoch = 0
        self._me: Leader | None = None  # set once this broker leads

    async def pool(self) -> asyncpg.Pool[Any]:
        if self._pool is None:
            try:
                self._pool = await asyncpg.create_pool(
                    self.dsn, min_size=1, max_size=4, timeout=CONNECT_TIMEOUT_S,
                    server_settings={"search_path": self.schema,
                                     "application_name": "ferry-broker"},
                )
            except ERRORS as e:
                raise StoreError(f"PostgreSQL: cannot connect: {e}") from e
        return self._pool

    async def elect(self) -> None:
        """Wait until this broker leads the queue set: lock held, epoch raised."""
        while True:
            conn = None
            try:
                conn = await connect(self.dsn, self.schema, **electing.LOCK_SESSION)
                await create(conn, self.schema)
                # Polled, not a blocking pg_advisory_lock: each try also proves the
                # session alive, so a standby never waits on a dead connection.
                while not await electing.try_lock(conn, self.schema):  # noqa: ASYNC110
                    await asyncio.sleep(electing.POLL_S)
                self.epoch, since_ms = await electing.take_over(conn, self.holder)
                writer = await connect(self.dsn, self.schema, **electing.WRITER_SESSION)
            except ERRORS as e:
                log.warning("election: PostgreSQL unreachable, retrying",
                            extra={"error": str(e) or type(e).__name__})
                if conn is not None:
                    with contextlib.suppress(*ERRORS):
                        await conn.close(timeout=2)
                await asyncio.sleep(RETRY_S)
                continue
            break
        self._lock_conn, self._writer_conn = conn, writer
        self._me = Leader(self.holder, self.epoch, since_ms)
        conn.add_termination_listener(self._lock_session_ended)
        self._watchdog = asyncio.create_task(self._ping(conn), name="ferry-store-pg-lease")
        log.info("elected", extra={"holder": self.holder, "epoch": self.epoch})

    def _lock_session_ended(self, _conn: object) -> None:
        self._lost("the leader lock's session ended")

    async def _ping(self, conn: asyncpg.Connection[Any]) -> None:
        while True:
            await asyncio.sleep(electing.PING_S)
            try:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), electing.LEASE_S)
            except ERRORS as e:
                self._lost(f"the leader lock's session failed: {e or type(e).__name__}")
                return

    async def leader(self) -> Leader | None:
        """This broker once it leads; else the leader the database names (None: unknown)."""
        if self._me is not None:
            return self._me
        try:
            pool = await self.pool()
            row = await pool.fetchrow("SELECT holder, epoch, since_ms FROM leader WHERE id = 1")
        except (StoreError, *ERRORS):
            return None
        if row is None or not row["epoch"]:
            return None
        return Leader(row["holder"], row["epoch"], row["since_ms"])

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[PoolConnectionProxy[Any]]:
        """A connection to read the queue set back with, once elected.

        PostgreSQL out of reach meanwhile (a failover under way) is a loss, as for a
        commit: the broker starts over and waits as a standby, rather than exiting as
        for a failure every start would meet again (and sitting out its supervisor's
        backoff once the new primary is up).
        """
        try:
            pool = await self.pool()
            async with pool.acquire() as conn:
                yield conn
        except (StoreError, *ERRORS) as e:
            self._lost(f"PostgreSQL unreachable while reading the queue set back: "
                       f"{str(e) or type(e).__name__}")
            raise

    async def restore(self, now: int) -> Broker:
        assert self._writer_conn is not None, "elect() first"
        async with self._reading() as conn, conn.transaction(isolation="repeatable_read"):
            broker = await loading.load(conn, now)
        self.writer.start(self._writer_conn, self.epoch)
        return broker

    async def chunk(self, qid: int, lo_seq: int, hi_seq: int) -> Restored:
        async with self._reading() as conn:
            return await loading.read_chunk(conn, qid, lo_seq, hi_seq)

    def loaded(self) -> None:
        pass

    async def dedup(self, windows: dict[int, int], now: int) -> dict[int, DedupIndex]:
        async with self._reading() as conn:
            return {qid: await loading.read_dedup(conn, qid, now - ms)
                    for qid, ms in windows.items()}

    def on_lost(self, listener: Callable[[str], None]) -> None:
        self._lost.subscribe(listener)

    async def aclose(self) -> None:
        """Commit what was submitted, then give up the lock (a standby takes over)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if not self.writer.failed:
            await self.writer.stop()
        if self._lock_conn is not None:  # giving the lock up is not losing it
            self._lock_conn.remove_termination_listener(self._lock_session_ended)
        for conn in (self._writer_conn, self._lock_conn):
            if conn is not None:
                with contextlib.suppress(*ERRORS):
                    await conn.close(timeout=5)
        self._writer_conn = self._lock_conn = None
        if self._pool is not None:
            with contextlib.suppress(*ERRORS):
                await asyncio.wait_for(self._pool.close(), 5)
            self._pool = None
