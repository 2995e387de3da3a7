"""Rebuild the core from PostgreSQL (as ../loading.py does from SQLite)."""

from __future__ import annotations

from array import array
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ferry.broker.core import ROWID_SHIFT, Broker, DedupIndex, Restored
from ferry.broker.models import GroupSettings, QueueSettings
from ferry.broker.store.settings import from_storage

Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
_SPAN = 1 << ROWID_SHIFT


async def load(conn: Conn, now: int) -> Broker:
    """Queues and groups; each queue's messages then come in with `read_chunk`."""
    broker = Broker(now)
    meta = {r["k"]: r["v"] for r in await conn.fetch("SELECT k, v FROM meta")}
    broker.next_qid = int(meta.get("next_qid", 1))
    broker.next_gid = int(meta.get("next_gid", 1))
    for qid, name, settings, created, published, next_seq in await conn.fetch(
        "SELECT id, name, settings, created_ms, published_total, next_seq FROM queues"
    ):
        base = qid << ROWID_SHIFT
        first = await conn.fetchval(  # an index probe: the lowest stored id of the queue
            "SELECT id FROM messages WHERE id >= $1 AND id < $2 ORDER BY id LIMIT 1",
            base, base + _SPAN,
        )
        qs = from_storage(QueueSettings, settings, f"queue {name}")
        broker.restore_queue(qid, name, qs, created, published, next_seq,
                             None if first is None else first - base)
    for gid, qid, name, settings, start, acked in await conn.fetch(
        "SELECT id, qid, name, settings, start_seq, acked_total FROM groups ORDER BY id"
    ):
        q = broker.by_qid.get(qid)
        if q is not None:
            gs = from_storage(GroupSettings, settings, f"group {name}")
            broker.restore_group(gid, q, name, gs, start, acked, now)
    groups = {g.gid: g for q in broker.queues.values() for g in q.groups.values()}
    for gid, seq in await conn.fetch("SELECT gid, seq FROM acks"):
        if gid in groups:
            groups[gid].restore_ack(seq)
    for gid, seq, count, visible in await conn.fetch(
        "SELECT gid, seq, count, visible_at FROM counts"
    ):
        if gid in groups:
            groups[gid].restore_count(seq, count, visible)
    for gid, seq, count, at, reason in await conn.fetch(
        "SELECT gid, seq, count, dead_at, reason FROM dead"
    ):
        if gid in groups:
            groups[gid].restore_dead(seq, count, at, reason)
    return broker


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
