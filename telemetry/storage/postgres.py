"""PostgreSQL engine (asyncpg): for collectors running in parallel on several hosts."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg

from ferry.telemetry.storage import queries
from ferry.telemetry.storage.base import StorageError, Store, now_us
from ferry.telemetry.storage.records import (
    NewSample,
    gpu_tuples,
    sample_tuples,
    schema_sql,
    statements,
)

# Serialises schema creation between collectors starting at the same moment.
SCHEMA_LOCK = 0x66657272  # "ferr"
RETRIES = 5
# A batch is COPYed (binary) straight into the table: a redelivery is rare, and a batch
# that repeats a stored key fails whole (unique violation, nothing written). That batch is
# then COPYed into a per-connection temp table emptied at every commit and moved with one
# INSERT .. ON CONFLICT DO NOTHING, which COPY alone cannot do. Measured (32,000 rows,
# batches of 1,000, fsync on): staging 36,900 rows/s, against 23,300 for the
# INSERT .. SELECT FROM unnest(column arrays) it replaced and 50,000 for one bare COPY;
# COPY straight in does half of staging's work (bench/README.md, "pipeline").
SAMPLES = "telemetry_samples"
STAGING = "telemetry_staging"
CREATE_STAGING = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} (LIKE telemetry_samples) ON COMMIT DELETE ROWS"
)
MOVE_STAGED = (
    f"INSERT INTO telemetry_samples SELECT * FROM {STAGING} ON CONFLICT DO NOTHING"
)
TRANSIENT = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)


class PostgresStore(Store):
    engine = "postgresql"
    placeholder = staticmethod(queries.dollar)

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 4) -> None:
        self.dsn = dsn
        self._sizes = (min_size, max_size)
        self._pool: asyncpg.Pool | None = None

    def _p(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageError("PostgreSQL store is not open")
        return self._pool

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            conn = await asyncpg.connect(self.dsn)
        except (OSError, asyncpg.PostgresError) as e:
            raise StorageError(f"PostgreSQL: cannot connect: {e}") from e
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
                for stmt in statements(schema_sql()):
                    await conn.execute(stmt)
        except (OSError, asyncpg.PostgresError) as e:
            raise StorageError(f"PostgreSQL: cannot create the schema: {e}") from e
        finally:
            await conn.close()
        try:  # after the schema: each connection's staging table is made LIKE the real one
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=self._sizes[0], max_size=self._sizes[1], init=_staging
            )
        except (OSError, asyncpg.PostgresError) as e:
            raise StorageError(f"PostgreSQL: cannot connect: {e}") from e

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def write(self, samples: Sequence[NewSample]) -> int:
        if not samples:
            return 0
        batch = list(samples)
        stored = now_us()
        rows = sample_tuples(batch, stored)
        gpus = gpu_tuples(batch)
        upsert = queries.upsert_gpu(self.placeholder, "GREATEST", "LEAST")
        direct, attempt = True, 0
        while True:
            try:
                async with self._p().acquire() as conn, conn.transaction():
                    if direct:
                        await conn.copy_records_to_table(SAMPLES, records=rows)
                        inserted = len(rows)
                    else:
                        await conn.copy_records_to_table(STAGING, records=rows)
                        status = await conn.execute(MOVE_STAGED)
                        inserted = int(status.rsplit(" ", 1)[1])
                    await conn.executemany(upsert, gpus)
                return inserted
            except asyncpg.exceptions.UniqueViolationError as e:
                if not direct:
                    raise StorageError(f"PostgreSQL write failed: {e}") from e
                # A row of the batch is stored already (a redelivery, a replay): nothing of
                # it was written; again through staging, which skips what is stored.
                direct = False
            except TRANSIENT:
                # Both writers rolled back; the lock order is fixed, so a retry goes through.
                attempt += 1
                if attempt == RETRIES:
                    raise
                await asyncio.sleep(0.05 * attempt)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                raise StorageError(f"PostgreSQL write failed: {e}") from e

    async def _fetch(self, sql: str, *args: object) -> list[Any]:
        try:
            return await self._p().fetch(sql, *args)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            raise StorageError(f"PostgreSQL query failed: {e}") from e


async def _staging(conn: asyncpg.Connection) -> None:
    await conn.execute(CREATE_STAGING)
