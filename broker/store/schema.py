"""The SQLite schema. A message row is keyed by its wire id (queue id << 40 | seq)."""

from __future__ import annotations

import sqlite3

PAGE_SIZE = 4096
DDL = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS queues (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, settings TEXT NOT NULL,
    created_ms INTEGER NOT NULL, published_total INTEGER NOT NULL DEFAULT 0,
    next_seq INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS groups (
    id INTEGER PRIMARY KEY, qid INTEGER NOT NULL, name TEXT NOT NULL, settings TEXT NOT NULL,
    start_seq INTEGER NOT NULL, acked_total INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, priority INTEGER NOT NULL, not_before INTEGER NOT NULL,
    published_ms INTEGER NOT NULL, key TEXT, dedup INTEGER,  -- dedup: the id's 64-bit hash
    doc BLOB  -- NULL: consumed (written by earlier versions; now consumed rows move to tombstones)
);
-- A consumed message whose dedup id is still inside the window: the row leaves
-- messages (deleting frees its page space; an UPDATE that shrank it would not)
-- and this much of it stays until PURGE_BELOW.
CREATE TABLE IF NOT EXISTS tombstones (
    id INTEGER PRIMARY KEY, dedup INTEGER NOT NULL, published_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS acks (
    gid INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (gid, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counts (
    gid INTEGER NOT NULL, seq INTEGER NOT NULL, count INTEGER NOT NULL,
    visible_at INTEGER NOT NULL, PRIMARY KEY (gid, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead (
    gid INTEGER NOT NULL, seq INTEGER NOT NULL, count INTEGER NOT NULL,
    dead_at INTEGER NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (gid, seq)
) WITHOUT ROWID;
"""


def connect(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with durable settings."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # SQLite's default, stated: larger pages were measured and write more WAL per commit at
    # both 256 B and 4 KiB bodies (bench/README.md, "page size"). It takes effect only before
    # WAL mode writes a new file's first page; an existing file keeps its own.
    conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is fsynced before it returns, so an answered publish survives kill -9.
    conn.execute("PRAGMA synchronous=FULL")
    # Debian builds SQLite with SECURE_DELETE on, which zeroes every freed page: deleting
    # a batch of consumed 4 KiB messages then wrote each freed overflow page to the WAL
    # (471 KiB a commit of 100 instead of 44). FAST zeroes deleted content only in pages
    # a commit writes anyway (bench/README.md, "secure_delete").
    conn.execute("PRAGMA secure_delete=FAST")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA cache_size=-8000")  # KiB
    # When the WAL starts over, a file grown by a burst is cut back to this.
    conn.execute("PRAGMA journal_size_limit=67108864")
    return conn


def create(conn: sqlite3.Connection) -> None:
    conn.executescript(DDL)
