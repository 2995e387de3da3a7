"""Leader election in PostgreSQL: an advisory lock on a dedicated session, plus an epoch.

Why an advisory lock and not a lease row with an expiry: the lock lives exactly
as long as the session holding it, and PostgreSQL ends that session for us in
every way a leader can die:
- the process is killed: the kernel closes its socket, the backend reads EOF and
  exits at once, and the lock is free (measured: a standby leads ~0.3 s later);
- the node or its network vanishes: TCP keepalives and tcp_user_timeout on the
  session drop it within LEASE_S;
- the process stalls (frozen, GC pause, SIGSTOP) with its socket still open: the
  leader pings its lock session every PING_S, and idle_session_timeout = LEASE_S
  makes the server end a session that stopped pinging.
No clocks are compared across machines. The lock alone does not stop a leader
that stalled and woke up from sending one more write on its other connection:
that is the epoch's job (writing.FENCE), checked inside every write transaction.
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg

LEASE_S = 5  # a silent leader's lock is freed within this
PING_S = 1.0  # the leader's keep-alive on its lock session
POLL_S = 0.25  # a standby's try for the lock
# Server-side settings of the session holding (or trying for) the lock.
LOCK_SESSION = {
    "idle_session_timeout": str(LEASE_S * 1000),
    "tcp_keepalives_idle": "1",
    "tcp_keepalives_interval": "1",
    "tcp_keepalives_count": str(LEASE_S - 1),
    "tcp_user_timeout": str(LEASE_S * 1000),
}
# The writer's session: a transaction left open by a stalled leader would hold the
# leader row FOR SHARE and block the takeover's epoch raise; the server ends it.
WRITER_SESSION = {"idle_in_transaction_session_timeout": str(LEASE_S * 1000)}


def lock_name(schema: str) -> str:
    return f"ferry-broker:{schema}"


async def try_lock(conn: asyncpg.Connection[Any], schema: str) -> bool:
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", lock_name(schema)))


async def take_over(conn: asyncpg.Connection[Any], holder: str) -> tuple[int, int]:
    """Raise the epoch (holding the lock): every write of an earlier leader is fenced off.
    Returns the new epoch and since when (ms)."""
    since_ms = time.time_ns() // 1_000_000
    epoch: int = await conn.fetchval(
        "UPDATE leader SET epoch = epoch + 1, holder = $1, since_ms = $2 WHERE id = 1"
        " RETURNING epoch", holder, since_ms,
    )
    return epoch, since_ms
