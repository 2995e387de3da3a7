"""NATS JetStream (Debian's nats-server) driven by nats-py.

Queue = a file-storage stream with work-queue retention (an acked message is
removed), group = one durable pull consumer that both consumers bind to, so
they compete. A batch is `batch` publish_async calls whose PubAcks are all
awaited; a consumer fetches up to `batch` and acks each (nats-py's standard
ack, which is not itself confirmed: the unacked() check at the end catches
any that were lost). Durability: file storage; Debian's nats-server 2.9 writes
every message to the file before its PubAck but fsyncs on its own schedule
(sync_interval arrived in 2.10), so a power loss may lose recent messages.
`nats-r3`: three servers in one cluster on loopback, the stream replicated to
all three (num_replicas=3): a PubAck means a majority of them stored it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path

import nats
from nats.aio.client import Client as NatsClient
from nats.errors import TimeoutError as NatsTimeout
from nats.js import api
from nats.js.errors import BadRequestError, NotFoundError
from testsupport.ports import free_port

from bench.drivers.base import GROUP, QUEUE, Connection, Driver, Handler
from bench.processes import ServerProcess, retrying, wait_until

CONFIG = """\
listen: 127.0.0.1:{port}
max_payload: 8MB
jetstream {{
  store_dir: "{store}"
  max_memory_store: 256MB
  max_file_store: 64GB
}}
"""


async def _quiet(e: Exception) -> None:
    """nats-py prints a traceback per failed attempt; the callers report failures."""


async def _connect(port: int) -> NatsClient:
    # reconnect_time_wait also spaces out failed first attempts: 2 s by default, which
    # would count in the restart figure while the server is still starting.
    return await nats.connect(
        f"nats://127.0.0.1:{port}", allow_reconnect=False, connect_timeout=2,
        reconnect_time_wait=0.02, max_reconnect_attempts=0, error_cb=_quiet,
        pending_size=64 * 1024 * 1024,
    )


class NatsConnection(Connection):
    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc
        self._js = nc.jetstream(publish_async_max_pending=100_000)

    async def publish(self, bodies: Sequence[bytes]) -> None:
        futures = [await self._js.publish_async(QUEUE, body) for body in bodies]
        await asyncio.gather(*futures)

    async def consume(self, name: str, batch: int, handle: Handler, stop: asyncio.Event) -> None:
        sub = await self._js.pull_subscribe_bind(GROUP, stream=QUEUE)
        try:
            while not stop.is_set():
                try:
                    msgs = await sub.fetch(batch, timeout=0.1)
                except NatsTimeout:
                    continue
                for m in msgs:
                    await m.ack()
                handle([m.data for m in msgs])
        finally:
            await sub.unsubscribe()

    async def receive_one(self) -> bytes | None:
        sub = await self._js.pull_subscribe_bind(GROUP, stream=QUEUE)
        try:
            msgs = await sub.fetch(1, timeout=0.5)
        except NatsTimeout:
            return None
        finally:
            await sub.unsubscribe()
        await msgs[0].ack_sync()
        return msgs[0].data

    async def unacked(self) -> int:
        info = await self._js.consumer_info(QUEUE, GROUP)
        return int(info.num_ack_pending or 0) + int(info.num_pending or 0)

    async def close(self) -> None:
        await self._nc.close()


NO_PLACEMENT = 10005  # JetStream's err_code: no suitable peers for placement
PLACEMENT_WAIT_S = 120.0


def _no_placement(error: Exception) -> bool:
    return isinstance(error, BadRequestError) and error.err_code == NO_PLACEMENT


CLUSTER = """\
server_name: n{index}
cluster {{
  name: bench
  listen: 127.0.0.1:{route}
  routes: [{routes}]
}}
"""


class NatsDriver(Driver):
    def __init__(self, workdir: Path, replicas: int = 1) -> None:
        super().__init__(workdir)
        self.replicas = replicas
        self.name = "nats" if replicas == 1 else f"nats-r{replicas}"
        self.durability = (
            "JetStream file storage, work-queue stream (2.9: fsync on its own timer)"
            + ("" if replicas == 1 else f"; {replicas} replicas, PubAck once a majority stored it"))
        self.ports = [free_port() for _ in range(replicas)]
        self.routes = [free_port() for _ in range(replicas)]
        self.port = self.ports[0]  # clients talk to the first server

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        servers = []
        for i, port in enumerate(self.ports):
            conf = self.workdir / f"nats{i}.conf"
            text = CONFIG.format(port=port, store=self.workdir / f"jetstream{i}")
            if self.replicas > 1:
                text += CLUSTER.format(index=i, route=self.routes[i], routes=", ".join(
                    f"nats-route://127.0.0.1:{r}" for j, r in enumerate(self.routes) if j != i))
            conf.write_text(text)
            servers.append(ServerProcess(f"{self.name}-{i}", ["nats-server", "-c", str(conf)],
                                         self.workdir / f"server{i}.log"))
        for server in servers:
            server.start()
        self.server, self.others = servers[0], servers[1:]

        async def ready() -> bool:
            nc = await _connect(self.port)
            try:
                # Clustered: answers once the servers elected their JetStream meta leader.
                await nc.jetstream().account_info()
                return True
            finally:
                await nc.close()

        await wait_until(ready, self.server, 600, "serving")

    async def reset(self) -> None:
        nc = await _connect(self.port)
        try:
            js = nc.jetstream()
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(QUEUE)
            config = api.StreamConfig(
                name=QUEUE, subjects=[QUEUE], storage=api.StorageType.FILE,
                retention=api.RetentionPolicy.WORK_QUEUE, num_replicas=self.replicas,
            )
            # Clustered: "no suitable peers for placement" while the meta leader counts a
            # (loaded, late) server as away; it comes back by itself.
            await retrying(lambda: js.add_stream(config), _no_placement, PLACEMENT_WAIT_S, 0.2)
            await js.add_consumer(QUEUE, api.ConsumerConfig(
                durable_name=GROUP, ack_policy=api.AckPolicy.EXPLICIT, ack_wait=30,
                max_ack_pending=20_000, max_waiting=512,
            ))
        finally:
            await nc.close()

    async def connect(self) -> Connection:
        return NatsConnection(await _connect(self.port))
