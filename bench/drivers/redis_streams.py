"""Redis 7 Streams (Debian's redis-server) driven by redis-py's asyncio client.

Queue = one stream, group = XGROUP; a batch is one pipeline of XADDs, a
consumer does XREADGROUP COUNT batch then XACK. Durability: appendonly yes with
appendfsync everysec (Redis' usual setting: up to ~1 s of acknowledged writes
can be lost on a crash) or always (fsync before each reply).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from testsupport.ports import free_port

from bench.drivers.base import GROUP, QUEUE, Connection, Driver, Handler
from bench.processes import ServerProcess, wait_until

FIELD = b"b"

class RedisConnection(Connection):
    def __init__(self, port: int) -> None:
        # Blocking: concurrent single publishes beyond the pool wait for a connection (and
        # that wait counts in their latency) instead of failing.
        pool = aioredis.BlockingConnectionPool(host="127.0.0.1", port=port, max_connections=64,
                                               timeout=None)
        self._r = aioredis.Redis.from_pool(pool)  # owns the pool: aclose() closes it

    async def publish(self, bodies: Sequence[bytes]) -> None:
        async with self._r.pipeline(transaction=False) as pipe:
            for body in bodies:
                pipe.xadd(QUEUE, {FIELD: body})
            await pipe.execute()

    async def _read(self, name: str, count: int, block_ms: int | None) -> list[tuple[bytes, bytes]]:
        reply: Any = await self._r.xreadgroup(
            GROUP, name, {QUEUE: ">"}, count=count, block=block_ms
        )
        if not reply:
            return []
        return [(mid, fields[FIELD]) for mid, fields in reply[0][1]]

    async def consume(self, name: str, batch: int, handle: Handler, stop: asyncio.Event) -> None:
        while not stop.is_set():
            got = await self._read(name, batch, 100)
            if got:
                await self._r.xack(QUEUE, GROUP, *(mid for mid, _ in got))
                handle([body for _, body in got])

    async def receive_one(self) -> bytes | None:
        got = await self._read("probe", 1, None)
        if not got:
            return None
        await self._r.xack(QUEUE, GROUP, got[0][0])
        return got[0][1]

    async def unacked(self) -> int:
        groups: Any = await self._r.xinfo_groups(QUEUE)
        for g in groups:
            if g["name"] in (GROUP, GROUP.encode()):
                return int(g["pending"]) + int(g.get("lag") or 0)
        raise RuntimeError(f"redis: group {GROUP} is missing")

    async def close(self) -> None:
        await self._r.aclose()

class RedisDriver(Driver):
    def __init__(self, workdir: Path, fsync: str = "everysec") -> None:
        super().__init__(workdir)
        self.fsync = fsync
        self.name = f"redis-{fsync}"
        self.durability = f"Streams, appendonly yes, appendfsync {fsync}"
        self.port = free_port()

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            "redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
            "--dir", str(self.workdir), "--appendonly", "yes", "--appendfsync", self.fsync,
            "--save", "", "--daemonize", "no", "--protected-mode", "no",
            "--logfile", "", "--maxmemory", "0",
        ]
        self.server = ServerProcess(self.name, argv, self.workdir / "server.log")
        self.server.start()
        probe = aioredis.Redis(host="127.0.0.1", port=self.port)

        async def ready() -> bool:
            # PING answers while the AOF is still loading; a real read does not.
            await probe.xlen(QUEUE)
            return True

        try:
            await wait_until(ready, self.server, 600, "serving")
        finally:
            await probe.aclose()

    async def reset(self) -> None:
        r = aioredis.Redis(host="127.0.0.1", port=self.port)
        try:
            await r.delete(QUEUE)
            await r.xgroup_create(QUEUE, GROUP, id="0", mkstream=True)
        finally:
            await r.aclose()

    async def connect(self) -> Connection:
        return RedisConnection(self.port)

