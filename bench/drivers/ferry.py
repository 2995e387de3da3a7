"""Ferry: a real `ferry-broker` process driven by ferry.broker.client.

Queue and group are Ferry's own; a batch is one `publish` call of `batch`
messages (over the client's pipelined WebSocket). Consumers run in one of two
modes: "stream" (the default, what Ferry's users write: `client.consumer(...)`
pushes deliveries over the WebSocket, at most `batch` unacked, and this
driver acks whatever has arrived since its last ack in one call) or "poll"
(`receive(max=batch)` then one `ack` per batch, like XREADGROUP + XACK).
Durability: Ferry's default, group commit with fsync before the answer.
Engine "postgres" (`ferry-pg`): the broker on a PostgreSQL primary with one
synchronous streaming standby (postgres_pair.py), so every answer waits for
the standby to hold the commit; its RSS and CPU include both servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from testsupport.ports import free_port

from bench.drivers.base import GROUP, QUEUE, Connection, Driver, Handler
from bench.drivers.postgres_pair import PgPair
from bench.processes import ServerProcess, wait_until
from ferry.broker.client import BrokerClient, Consumer, NotFound
from ferry.broker.models import Delivery, OutgoingMessage

ConsumeMode = Literal["stream", "poll"]
EngineName = Literal["sqlite", "postgres"]


def _body(delivery: Delivery) -> bytes:
    body = delivery.body
    return body.encode() if isinstance(body, str) else bytes(body)


class FerryConnection(Connection):
    def __init__(self, url: str, mode: ConsumeMode) -> None:
        self._client = BrokerClient(url)
        self._mode = mode

    async def publish(self, bodies: Sequence[bytes]) -> None:
        # Bodies are ASCII: sent as JSON strings, Ferry's body type for text.
        messages = [OutgoingMessage(body=b.decode()) for b in bodies]
        await self._client.publish(QUEUE, messages, batch_size=len(messages))

    async def consume(self, name: str, batch: int, handle: Handler, stop: asyncio.Event) -> None:
        if self._mode == "poll":
            await self._poll(name, batch, handle, stop)
            return
        consumer = self._client.consumer(QUEUE, GROUP, name, max_in_flight=batch)
        async with consumer:
            await _stream(consumer, handle, stop)

    async def _poll(self, name: str, batch: int, handle: Handler, stop: asyncio.Event) -> None:
        while not stop.is_set():
            got = await self._client.receive(QUEUE, GROUP, name, max=batch, wait_ms=100)
            if got:
                await self._client.ack(QUEUE, GROUP, [d.receipt for d in got])
                handle([_body(d) for d in got])

    async def receive_one(self) -> bytes | None:
        got = await self._client.receive(QUEUE, GROUP, "probe", max=1, wait_ms=0)
        if not got:
            return None
        await self._client.ack(QUEUE, GROUP, [got[0].receipt])
        return _body(got[0])

    async def unacked(self) -> int:
        return (await self._client.group_stats(QUEUE, GROUP)).lag

    async def close(self) -> None:
        await self._client.close()


async def _stream(consumer: Consumer, handle: Handler, stop: asyncio.Event) -> None:
    """Iterate deliveries; one acker task acks everything that arrived while it was busy."""
    pending: list[Delivery] = []
    arrived = asyncio.Event()

    async def acker() -> None:
        while True:
            await arrived.wait()
            arrived.clear()
            batch, pending[:] = list(pending), []
            await consumer.ack(*batch)
            handle([_body(d) for d in batch])

    async def receiver() -> None:
        async for delivery in consumer:
            pending.append(delivery)
            arrived.set()

    tasks = [asyncio.create_task(acker()), asyncio.create_task(receiver())]
    stopping = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t is not stopping:
                t.result()  # a consumer that died raises here
    finally:
        for t in (*tasks, stopping):
            t.cancel()
        for t in (*tasks, stopping):
            with contextlib.suppress(asyncio.CancelledError):
                await t


class FerryDriver(Driver):
    def __init__(
        self, workdir: Path, mode: ConsumeMode = "stream", engine: EngineName = "sqlite",
        *, max_connections: int | None = None,
    ) -> None:
        super().__init__(workdir)
        self.max_connections = max_connections  # None: the broker's default (1,000)
        self.name = "ferry" + ("" if mode == "stream" else f"-{mode}") + (
            "-pg" if engine == "postgres" else "")
        self.durability = (
            "default: group commit, fsync before the answer" if engine == "sqlite" else
            "PostgreSQL, group commit; COMMIT fsynced on the primary and its synchronous standby")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mode: ConsumeMode = mode
        self.pg = PgPair(workdir / "pg") if engine == "postgres" else None

    async def start(self) -> None:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        exe = shutil.which("ferry-broker", path=str(Path(sys.executable).parent))
        if exe is None:
            raise RuntimeError(f"ferry-broker is not installed next to {sys.executable}")
        store = ["--data-dir", str(self.workdir / "data")]
        if self.pg is not None:
            await self.pg.start(self.others)
            store = ["--postgres", self.pg.dsn]
        argv = [exe, *store, "--host", "127.0.0.1",
                "--port", str(self.port), "--log-level", "warning"]
        if self.max_connections is not None:
            argv += ["--max-connections", str(self.max_connections)]
        self.server = ServerProcess(self.name, argv, self.workdir / "server.log")
        self.server.start()
        client = BrokerClient(self.url, retries=0)
        try:
            await wait_until(client.health, self.server, 600, "ready (/readyz)")
        finally:
            await client.close()

    async def reset(self) -> None:
        async with BrokerClient(self.url) as client:
            with contextlib.suppress(NotFound):
                await client.delete_queue(QUEUE)
            await client.put_queue(QUEUE)
            await client.put_group(QUEUE, GROUP)

    async def connect(self) -> Connection:
        return FerryConnection(self.url, self.mode)
