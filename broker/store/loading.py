"""Rebuild the core from the store at start (no bodies are read)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ferry.broker.core import ROWID_SHIFT, Broker, DedupIndex, Restored
from ferry.broker.models import GroupSettings, QueueSettings
from ferry.broker.store.settings import from_storage

log = logging.getLogger("ferry.broker.store")


def load_all(conn: sqlite3.Connection, now: int) -> Broker:
    """The whole state at once (tests, tools); the server streams chunks instead."""
    broker = load(conn, now)
    for q in broker.queues.values():
        for lo, hi in q.chunks_to_restore(CHUNK):
            q.restore_chunk(read_chunk(conn, q.qid, lo, hi), hi)
        q.finish_restore()
    return broker


# What both engines read back at start, in this order; queues get the seq of their first
# stored message (None: none stored) appended by the engine.
META = "SELECT k, v FROM meta"
QUEUES = "SELECT id, name, settings, created_ms, published_total, next_seq FROM queues"
GROUPS = "SELECT id, qid, name, settings, start_seq, acked_total FROM groups ORDER BY id"
ACKS = "SELECT gid, seq FROM acks"
COUNTS = "SELECT gid, seq, count, visible_at FROM counts"
DEAD = "SELECT gid, seq, count, dead_at, reason FROM dead"
Rows = Iterable[Sequence[Any]]


def rebuild(now: int, meta: Rows, queues: Rows, groups: Rows, acks: Rows, counts: Rows,
            dead: Rows) -> Broker:
    """Queues and groups from either engine's rows (as META, QUEUES... select them)."""
    broker = Broker(now)
    ids = dict((k, v) for k, v in meta)
    broker.next_qid = int(ids.get("next_qid", 1))
    broker.next_gid = int(ids.get("next_gid", 1))
    for qid, name, settings, created, published, next_seq, first in queues:
        qs = from_storage(QueueSettings, settings, f"queue {name}")
        broker.restore_queue(qid, name, qs, created, published, next_seq, first)
    for gid, qid, name, settings, start, acked in groups:
        q = broker.by_qid.get(qid)
        if q is not None:
            gs = from_storage(GroupSettings, settings, f"group {name}")
            broker.restore_group(gid, q, name, gs, start, acked)
    by_gid = {g.gid: g for q in broker.queues.values() for g in q.groups.values()}
    for gid, seq in acks:
        if gid in by_gid:
            by_gid[gid].restore_ack(seq)
    for gid, seq, count, visible in counts:
        if gid in by_gid:
            by_gid[gid].restore_count(seq, count, visible)
    for gid, seq, count, at, reason in dead:
        if gid in by_gid:
            by_gid[gid].restore_dead(seq, count, at, reason)
    return broker


def load(conn: sqlite3.Connection, now: int) -> Broker:
    """Queues and groups; each queue's messages then come in with `read_chunk`."""
    queues = [(*row, _first(conn, row[0])) for row in conn.execute(QUEUES).fetchall()]
    return rebuild(now, conn.execute(META).fetchall(), queues, conn.execute(GROUPS).fetchall(),
                   conn.execute(ACKS), conn.execute(COUNTS), conn.execute(DEAD))


def _first(conn: sqlite3.Connection, qid: int) -> int | None:
    bounds = _bounds(conn, qid)
    return None if bounds is None else bounds[1] - bounds[0]


# Per chunk of seqs: one pass of cheap aggregates, then SQLite concatenates only the
# columns that vary and Python splits them at C speed (a million rows would otherwise
# cost a million tuples and a million Python calls). Dedup ids are read apart, after
# the broker is already serving (`read_dedup`).
_SUMMARY = """
SELECT count(*), min(id), max(id), min(priority), max(priority), sum(doc IS NULL),
       sum(key IS NOT NULL), sum(not_before > published_ms AND doc IS NOT NULL)
FROM messages WHERE id >= :lo AND id < :hi
"""
CHUNK = 65_536


def _ints(text: str | None) -> Iterator[int]:
    return map(int, text.split(",")) if text else iter(())


def _column(
    conn: sqlite3.Connection, expr: str, params: dict[str, int], table: str = "messages"
) -> Iterator[int]:
    sql = f"SELECT group_concat({expr}) FROM {table} WHERE id >= :lo AND id < :hi"
    return _ints(conn.execute(sql, params).fetchone()[0])


def _bounds(
    conn: sqlite3.Connection, qid: int, table: str = "messages"
) -> tuple[int, int, int] | None:
    """(rowid base, first rowid, last rowid) of a queue's rows in `table`."""
    base = qid << ROWID_SHIFT
    span = (base, base + (1 << ROWID_SHIFT))
    # Two indexed lookups: min() and max() in one query would scan the range.
    first = conn.execute(
        f"SELECT id FROM {table} WHERE id >= ? AND id < ? ORDER BY id LIMIT 1", span
    ).fetchone()
    if first is None:
        return None
    last = conn.execute(
        f"SELECT id FROM {table} WHERE id >= ? AND id < ? ORDER BY id DESC LIMIT 1", span
    ).fetchone()
    return base, first[0], last[0]


def read_chunk(conn: sqlite3.Connection, qid: int, lo_seq: int, hi_seq: int) -> Restored:
    """Stored messages with lo_seq <= seq < hi_seq, as columns in seq order."""
    out = Restored()
    base = qid << ROWID_SHIFT
    params = {"base": base, "lo": base + lo_seq, "hi": base + hi_seq}
    n, first, last, pmin, pmax, consumed, keyed, delayed = conn.execute(
        _SUMMARY, params
    ).fetchone()
    if not n:
        return out
    if last - first + 1 == n:  # dense: no holes
        out.seqs.extend(range(first - base, last - base + 1))
    else:
        out.seqs.extend(_column(conn, "id - :base", params))
    if pmin == pmax:
        out.priorities.frombytes(bytes([pmin]) * n)
    else:
        out.priorities.extend(_column(conn, "priority", params))
    out.published.extend(_column(conn, "published_ms", params))
    if consumed:
        out.consumed.extend(_column(conn, "CASE WHEN doc IS NULL THEN id - :base END", params))
    if keyed:
        out.keys.extend(conn.execute(
            "SELECT id - :base, key FROM messages WHERE id >= :lo AND id < :hi "
            "AND key IS NOT NULL ORDER BY id", params,
        ))
    if delayed:
        out.delayed.extend(conn.execute(
            "SELECT id - :base, not_before FROM messages WHERE id >= :lo AND id < :hi "
            "AND not_before > published_ms AND doc IS NOT NULL", params,
        ))
    return out


def read_dedup(conn: sqlite3.Connection, qid: int, cutoff: int) -> DedupIndex:
    """Dedup hashes published at or after cutoff, of stored and of consumed messages
    (tombstones), indexed in seq order."""
    out = DedupIndex()
    spans = [b for t in ("messages", "tombstones") if (b := _bounds(conn, qid, t)) is not None]
    if not spans:
        return out
    base = spans[0][0]
    lo, top = min(b[1] for b in spans), max(b[2] for b in spans)
    add = out.add
    while lo <= top:
        params = {"base": base, "lo": lo, "hi": lo + CHUNK, "cutoff": cutoff}
        stored = _dedup_rows(conn, "messages", "dedup IS NOT NULL AND published_ms >= :cutoff",
                             params)
        consumed = _dedup_rows(conn, "tombstones", "published_ms >= :cutoff", params)
        for seq, h, t in sorted(stored + consumed):  # two sorted runs: a linear merge
            add(h, seq, t)
        lo += CHUNK
    return out


def _dedup_rows(
    conn: sqlite3.Connection, table: str, where: str, params: dict[str, int]
) -> list[tuple[int, int, int]]:
    """(seq, dedup hash, published_ms) of one chunk's rows in `table`, in seq order."""
    seqs = _column(conn, f"CASE WHEN {where} THEN id - :base END", params, table)
    hashes = _column(conn, f"CASE WHEN {where} THEN dedup END", params, table)
    times = _column(conn, f"CASE WHEN {where} THEN published_ms END", params, table)
    return list(zip(seqs, hashes, times, strict=True))
