"""The SQL of a commit: every intent of a batch of `Writes`, in order (runs in the committer)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from ferry.broker.core import Kind
from ferry.broker.core.writes import Row, merged

_Q = 1 << 40
# One request's writes as they cross the pipe: (ops as (kind, rows), queue totals, group totals).
Wire = tuple[list[tuple[int, list[Row]]], dict[int, tuple[int, int]], dict[int, int]]


def to_wire(ops: Sequence[tuple[Kind, list[Row]]], totals: dict[int, tuple[int, int]],
            group_totals: dict[int, int]) -> Wire:
    return [(int(k), rows) for k, rows in ops], totals, group_totals


# Python's sqlite3 releases the GIL around every statement step, and executemany steps
# once per row: with the event loop busy, each re-acquire can wait a whole switch
# interval, so a commit of a few hundred rows took hundreds of milliseconds. Frequent
# kinds are therefore written as one multi-row statement per chunk of rows.
_INSERT = {
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


def apply(conn: sqlite3.Connection, batch: list[Wire]) -> None:
    """Every intent of the batch in order; runs of one kind become few statements."""
    runs, totals, group_totals = merged(batch)
    for kind, rows in runs:
        _apply_run(conn, Kind(kind), rows)
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
    """Consumed messages leave `messages`; those with a dedup id leave a tombstone."""
    for chunk in _chunks(rows):
        marks = ",".join("?" * len(chunk))
        ids = [r[0] for r in chunk]
        conn.execute(
            "INSERT OR IGNORE INTO tombstones SELECT id, dedup, published_ms FROM messages "
            f"WHERE id IN ({marks}) AND dedup IS NOT NULL", ids,
        )
        conn.execute(f"DELETE FROM messages WHERE id IN ({marks})", ids)


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
            _drop_messages(conn, qid * _Q, below)
            _drop_group_rows_below(conn, qid, below & (_Q - 1))
        elif kind is Kind.GROUP_DELETED:
            _drop_group(conn, row[0])
        elif kind is Kind.QUEUE_DELETED:
            qid = row[0]
            for (gid,) in ex("SELECT id FROM groups WHERE qid=?", (qid,)).fetchall():
                _drop_group(conn, gid)
            _drop_messages(conn, qid * _Q, (qid + 1) * _Q)
            ex("DELETE FROM queues WHERE id=?", (qid,))


def _drop_messages(conn: sqlite3.Connection, lo: int, hi: int) -> None:
    """Stored messages and tombstones with lo <= id < hi."""
    for table in ("messages", "tombstones"):
        conn.execute(f"DELETE FROM {table} WHERE id >= ? AND id < ?", (lo, hi))


def _drop_group(conn: sqlite3.Connection, gid: int) -> None:
    for table in ("acks", "counts", "dead"):
        conn.execute(f"DELETE FROM {table} WHERE gid=?", (gid,))
    conn.execute("DELETE FROM groups WHERE id=?", (gid,))


def _drop_group_rows_below(conn: sqlite3.Connection, qid: int, seq: int) -> None:
    for (gid,) in conn.execute("SELECT id FROM groups WHERE qid=?", (qid,)).fetchall():
        for table in ("acks", "counts", "dead"):
            conn.execute(f"DELETE FROM {table} WHERE gid=? AND seq<?", (gid, seq))
