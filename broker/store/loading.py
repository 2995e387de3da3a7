"""Rebuild the core from the store at start (no bodies are read)."""

from __future__ import annotations

import logging
import sqlite3

import orjson

from ferry.broker.core import Broker, Queue, split_rowid
from ferry.broker.models import GroupSettings, QueueSettings

log = logging.getLogger("ferry.broker.store")


def load(conn: sqlite3.Connection, now: int) -> Broker:
    broker = Broker(now)
    meta = dict(conn.execute("SELECT k, v FROM meta").fetchall())
    broker.next_qid = int(meta.get("next_qid", 1))
    broker.next_gid = int(meta.get("next_gid", 1))
    stored_next: dict[int, int] = {}
    for qid, name, settings, created, published, next_seq in conn.execute(
        "SELECT id, name, settings, created_ms, published_total, next_seq FROM queues"
    ):
        qs = QueueSettings.model_validate(orjson.loads(settings))
        broker.restore_queue(qid, name, qs, created, published, next_seq)
        stored_next[qid] = next_seq
    _load_messages(conn, broker, now)
    for qid, next_seq in stored_next.items():
        broker.by_qid[qid].finish_restore(next_seq)
    for gid, qid, name, settings, start, acked in conn.execute(
        "SELECT id, qid, name, settings, start_seq, acked_total FROM groups ORDER BY id"
    ).fetchall():
        q = broker.by_qid.get(qid)
        if q is None:
            continue
        gs = GroupSettings.model_validate(orjson.loads(settings))
        broker.restore_group(gid, q, name, gs, start, acked, now)
    groups = {g.gid: g for q in broker.queues.values() for g in q.groups.values()}
    for gid, seq in conn.execute("SELECT gid, seq FROM acks"):
        if gid in groups:
            groups[gid].restore_ack(seq)
    for gid, seq, count, visible in conn.execute("SELECT gid, seq, count, visible_at FROM counts"):
        if gid in groups:
            groups[gid].restore_count(seq, count, visible)
    for gid, seq, count, at, reason in conn.execute(
        "SELECT gid, seq, count, dead_at, reason FROM dead"
    ):
        if gid in groups:
            groups[gid].restore_dead(seq, count, at, reason)
    return broker


def _load_messages(conn: sqlite3.Connection, broker: Broker, now: int) -> None:
    q: Queue | None = None
    qid_now = -1
    cutoff = 0
    cur = conn.execute(
        "SELECT id, priority, published_ms, not_before, key, dedup, doc IS NULL FROM messages "
        "ORDER BY id"
    )
    while rows := cur.fetchmany(10_000):
        for rid, prio, published, not_before, key, dedup, consumed in rows:
            qid, seq = split_rowid(rid)
            if qid != qid_now:
                qid_now = qid
                q = broker.by_qid.get(qid)
                if q is not None:
                    cutoff = now - q.settings.dedup_window_ms
            if q is None:
                continue
            h = hash(dedup) if dedup is not None and published >= cutoff else None
            q.restore(seq, prio, published, not_before, key, h, bool(consumed))
