"""The PostgreSQL schema: the SQLite tables, in one PostgreSQL schema per queue set,
plus the leader row that fences every write."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import asyncpg

# A queue set is a PostgreSQL schema; its name is also the election's lock name.
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
DEFAULT_SCHEMA = "ferry"
# Serialises schema creation between brokers starting at the same moment.
SCHEMA_LOCK = "ferry-broker-schema"
CONNECT_TIMEOUT_S = 10.0  # per host tried; asyncpg's default (60 s) would stall an election
# What talking to PostgreSQL can raise when it, or the way to it, fails (a connect or
# an acquire past its timeout included): the engine's one notion of "unreachable".
ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError)

DDL = """
CREATE TABLE IF NOT EXISTS meta (k text PRIMARY KEY, v bigint NOT NULL);
-- The fence: the leader raises epoch when it takes over; every write transaction
-- first reads it FOR SHARE and gives up unless it is still its own.
CREATE TABLE IF NOT EXISTS leader (
    id int PRIMARY KEY CHECK (id = 1), epoch bigint NOT NULL, holder text NOT NULL,
    since_ms bigint NOT NULL
);
INSERT INTO leader VALUES (1, 0, '', 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS queues (
    id bigint PRIMARY KEY, name text UNIQUE NOT NULL, settings text NOT NULL,
    created_ms bigint NOT NULL, published_total bigint NOT NULL DEFAULT 0,
    next_seq bigint NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS groups (
    id bigint PRIMARY KEY, qid bigint NOT NULL, name text NOT NULL, settings text NOT NULL,
    start_seq bigint NOT NULL, acked_total bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
    id bigint PRIMARY KEY, priority smallint NOT NULL, not_before bigint NOT NULL,
    published_ms bigint NOT NULL, key text, dedup bigint, doc bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS tombstones (
    id bigint PRIMARY KEY, dedup bigint NOT NULL, published_ms bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS acks (gid bigint NOT NULL, seq bigint NOT NULL, PRIMARY KEY (gid, seq));
CREATE TABLE IF NOT EXISTS counts (
    gid bigint NOT NULL, seq bigint NOT NULL, count int NOT NULL, visible_at bigint NOT NULL,
    PRIMARY KEY (gid, seq)
);
CREATE TABLE IF NOT EXISTS dead (
    gid bigint NOT NULL, seq bigint NOT NULL, count int NOT NULL, dead_at bigint NOT NULL,
    reason text NOT NULL, PRIMARY KEY (gid, seq)
);
"""


def check_schema(name: str) -> str:
    if not SCHEMA_NAME.match(name):
        raise ValueError(
            f"invalid PostgreSQL schema name {name!r}: lowercase letters, digits and _, "
            "at most 63, not starting with a digit"
        )
    return name


async def connect(dsn: str, schema: str, **settings: str) -> asyncpg.Connection[Any]:
    """A connection whose unqualified names resolve in the queue set's schema.

    A multi-host DSN with target_session_attrs=read-write reaches whichever host is
    the primary now (libpq's rule, which asyncpg follows).
    """
    conn: asyncpg.Connection[Any] = await asyncpg.connect(
        dsn, timeout=CONNECT_TIMEOUT_S,
        server_settings={"search_path": schema, "application_name": "ferry-broker", **settings},
    )
    return conn


async def create(conn: asyncpg.Connection[Any], schema: str) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", SCHEMA_LOCK)
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(DDL)
