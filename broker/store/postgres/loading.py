"""Rebuild the core from PostgreSQL (as ../loading.py does from SQLite)."""

from __future__ import annotations

from array import array
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ferry.broker.core import ROWID_SHIFT, Broker, DedupIndex, Restored
from ferry.broker.store.loading import ACKS, COUNTS, DEAD, GROUPS, META, QUEUES, rebuild

Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
_SPAN = 1 << ROWID_SHIFT


async def load(conn: Conn, now: int) -> Broker:
    """Queues and groups; each queue's messages then come in with `read_chunk`."""
    meta = await conn.fetch(META)
    queues = [(*row, await _first(conn, row[0])) for row in await conn.fetch(QUEUES)]
    return rebuild(now, meta, queues, await conn.fetch(GROUPS), await conn.fetch(ACKS),
                   await conn.fetch(COUNTS), await conn.fetch(DEAD))


async def _first(conn: Conn, qid: int) -> int | None:
    """The queue's lowest stored seq (an index probe), None when it stores none."""
    base = qid << ROWID_SHIFT
    first: int | None = await conn.fetchval(
        "SELECT id FROM messages WHERE id >= $1 AND id < $2 ORDER BY id LIMIT 1",
        base, base + _SPAN,
    )
    return None if first is None else first - base


# Columns come back as arrays, one value each per row: no Python object per row.
_CHUNK = """
SELECT array_agg(id - $1 ORDER BY id), array_agg(priority ORDER BY id),
       array_agg(published_ms ORDER BY id)
FROM messages WHERE id >= $2 AND id < $3
"""


async def read_chunk(conn: Conn, qid: int, lo_seq: int, hi_seq: int) -> Restored:
    """Stored messages with lo_seq <= seq < hi_seq, as columns in seq order."""
    out = Restored()
    base = qid << ROWID_SHIFT
    lo, hi = base + lo_seq, base + hi_seq
    row = await conn.fetchrow(_CHUNK, base, lo, hi)
    if row is None or not row[0]:
        return out
    seqs, priorities, published = row
    out.seqs.extend(seqs)
    out.priorities.extend(array("b", priorities))
    out.published.extend(published)
    out.keys.extend((r[0], r[1]) for r in await conn.fetch(
        "SELECT id - $1, key FROM messages WHERE id >= $2 AND id < $3 AND key IS NOT NULL"
        " ORDER BY id", base, lo, hi,
    ))
    out.delayed.extend((r[0], r[1]) for r in await conn.fetch(
        "SELECT id - $1, not_before FROM messages WHERE id >= $2 AND id < $3"
        " AND not_before > published_ms ORDER BY id", base, lo, hi,
    ))
    return out


async def read_dedup(conn: Conn, qid: int, cutoff: int) -> DedupIndex:
    """Dedup hashes published at or after cutoff, of stored and of consumed messages
    (tombstones), indexed in seq order."""
    out = DedupIndex()
    base = qid << ROWID_SHIFT
    rows = await conn.fetch(
        "SELECT id - $1 AS seq, dedup, published_ms FROM messages"
        " WHERE id >= $1 AND id < $2 AND dedup IS NOT NULL AND published_ms >= $3"
        " UNION ALL SELECT id - $1, dedup, published_ms FROM tombstones"
        " WHERE id >= $1 AND id < $2 AND published_ms >= $3 ORDER BY seq",
        base, base + _SPAN, cutoff,
    )
    add = out.add
    for seq, h, t in rows:
        add(h, seq, t)
    return out
