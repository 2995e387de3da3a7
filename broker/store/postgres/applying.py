"""The SQL of a commit on PostgreSQL: every intent of a batch of `Writes`, in order.

The same intents as the SQLite committer (../applying.py) in PostgreSQL's dialect:
each run of one kind is one statement over unnested column arrays, so a group
commit costs a handful of round trips whatever its size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ferry.broker.core import ROWID_SHIFT, Kind, Writes
from ferry.broker.core.writes import Row, merged

_Q = 1 << ROWID_SHIFT

# kind -> (statement over unnested arrays, key columns of rows that must be unique in it)
_UNNEST: dict[Kind, tuple[str, tuple[int, ...]]] = {
    Kind.MESSAGE: (
        "INSERT INTO messages SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::bigint[],"
        " $4::bigint[], $5::text[], $6::bigint[], $7::bytea[]) ON CONFLICT DO NOTHING", ()),
    Kind.ACK: (
        "INSERT INTO acks SELECT * FROM unnest($1::bigint[], $2::bigint[])"
        " ON CONFLICT DO NOTHING", ()),
    # An upsert may not touch one row twice: runs keep the last row per key.
    Kind.COUNT: (
        "INSERT INTO counts SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[],"
        " $4::bigint[]) ON CONFLICT (gid, seq) DO UPDATE SET count = excluded.count,"
        " visible_at = excluded.visible_at", (0, 1)),
    Kind.DEAD: (
        "INSERT INTO dead SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[],"
        " $4::bigint[], $5::text[]) ON CONFLICT (gid, seq) DO UPDATE SET count = excluded.count,"
        " dead_at = excluded.dead_at, reason = excluded.reason", (0, 1)),
    Kind.COUNT_DELETED: (
        "DELETE FROM counts t USING unnest($1::bigint[], $2::bigint[]) AS d(gid, seq)"
        " WHERE t.gid = d.gid AND t.seq = d.seq", ()),
    Kind.DEAD_DELETED: (
        "DELETE FROM dead t USING unnest($1::bigint[], $2::bigint[]) AS d(gid, seq)"
        " WHERE t.gid = d.gid AND t.seq = d.seq", ()),
    Kind.PRIORITY: (
        "UPDATE messages t SET priority = d.p, doc = d.doc"
        " FROM unnest($1::smallint[], $2::bytea[], $3::bigint[]) AS d(p, doc, id)"
        " WHERE t.id = d.id", (2,)),
    Kind.QUEUE: (
        "INSERT INTO queues (id, name, settings, created_ms) SELECT * FROM unnest($1::bigint[],"
        " $2::text[], $3::text[], $4::bigint[]) ON CONFLICT (id) DO UPDATE"
        " SET settings = excluded.settings", (0,)),
    Kind.GROUP: (
        "INSERT INTO groups (id, qid, name, settings, start_seq) SELECT * FROM"
        " unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[])"
        " ON CONFLICT (id) DO UPDATE SET settings = excluded.settings", (0,)),
}
_NEXT_ID = (
    "INSERT INTO meta VALUES ($1, $2)"
    " ON CONFLICT (k) DO UPDATE SET v = GREATEST(meta.v, excluded.v)"
)
_TOTALS = (
    "UPDATE queues t SET published_total = d.p, next_seq = d.n"
    " FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS d(id, p, n) WHERE t.id = d.id"
)
_GROUP_TOTALS = (
    "UPDATE groups t SET acked_total = d.a FROM unnest($1::bigint[], $2::bigint[]) AS d(id, a)"
    " WHERE t.id = d.id"
)
_CONSUMED = (
    "WITH gone AS (DELETE FROM messages WHERE id = ANY($1::bigint[])"
    " RETURNING id, dedup, published_ms)"
    " INSERT INTO tombstones SELECT * FROM gone WHERE dedup IS NOT NULL ON CONFLICT DO NOTHING"
)

Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


async def apply(conn: Conn, batch: Sequence[Writes]) -> None:
    """Every intent of the batch in order; runs of one kind become one statement."""
    runs, totals, group_totals = merged((w.ops, w.totals, w.group_totals) for w in batch)
    for kind, rows in runs:
        await _apply_run(conn, Kind(kind), rows)
    if totals:
        await conn.execute(_TOTALS, list(totals), [p for p, _ in totals.values()],
                           [n for _, n in totals.values()])
    if group_totals:
        await conn.execute(_GROUP_TOTALS, list(group_totals), list(group_totals.values()))


def _columns(rows: list[Row], key: tuple[int, ...]) -> list[list[Any]]:
    if key:  # the last row per key wins, as INSERT OR REPLACE does in SQLite
        rows = list({tuple(row[i] for i in key): row for row in rows}.values())
    return [list(c) for c in zip(*rows, strict=True)]


async def _apply_run(conn: Conn, kind: Kind, rows: list[Row]) -> None:
    unnest = _UNNEST.get(kind)
    if unnest is not None:
        sql, key = unnest
        await conn.execute(sql, *_columns(rows, key))
        if kind is Kind.QUEUE:
            await conn.execute(_NEXT_ID, "next_qid", max(r[0] for r in rows) + 1)
        elif kind is Kind.GROUP:
            await conn.execute(_NEXT_ID, "next_gid", max(r[0] for r in rows) + 1)
        return
    if kind is Kind.CONSUMED:
        await conn.execute(_CONSUMED, [r[0] for r in rows])
        return
    for row in rows:
        if kind is Kind.PURGE_BELOW:
            qid, below = row
            await _drop_messages(conn, qid * _Q, below)
            for table in ("acks", "counts", "dead"):
                await conn.execute(
                    f"DELETE FROM {table} WHERE seq < $2"
                    " AND gid IN (SELECT id FROM groups WHERE qid = $1)", qid, below & (_Q - 1))
        elif kind is Kind.GROUP_DELETED:
            await _drop_group(conn, row[0])
        elif kind is Kind.QUEUE_DELETED:
            qid = row[0]
            for r in await conn.fetch("SELECT id FROM groups WHERE qid = $1", qid):
                await _drop_group(conn, r[0])
            await _drop_messages(conn, qid * _Q, (qid + 1) * _Q)
            await conn.execute("DELETE FROM queues WHERE id = $1", qid)


async def _drop_messages(conn: Conn, lo: int, hi: int) -> None:
    """Stored messages and tombstones with lo <= id < hi."""
    for table in ("messages", "tombstones"):
        await conn.execute(f"DELETE FROM {table} WHERE id >= $1 AND id < $2", lo, hi)


async def _drop_group(conn: Conn, gid: int) -> None:
    for table in ("acks", "counts", "dead"):
        await conn.execute(f"DELETE FROM {table} WHERE gid = $1", gid)
    await conn.execute("DELETE FROM groups WHERE id = $1", gid)
