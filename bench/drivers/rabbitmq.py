"""RabbitMQ (Debian's rabbitmq-server) driven by aio-pika.

Queue = a durable quorum queue (Raft log fsynced before the confirm), messages
persistent, publisher confirms on; a batch is `batch` publishes whose confirms
are all awaited. A consumer uses basic.qos prefetch = batch and acks every
delivery. The node runs as its own Erlang node (own name, AMQP/dist/epmd
ports, RABBITMQ_MNESIA_BASE, HOME for the cookie) so it never meets a
system-wide RabbitMQ.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from pamqp.common import FieldTable
from testsupport.ports import free_port

from bench.drivers.base import QUEUE, Connection, Driver, Handler
from bench.processes import ServerProcess, wait_until

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # the wrapper in /usr/sbin switches user
CONFIG = """\
loopback_users = none
disk_free_limit.absolute = 50MB
vm_memory_high_watermark.relative = 0.4
log.console = false
log.file.level = warning
"""
QUORUM: FieldTable = {"x-queue-type": "quorum"}


class RabbitConnection(Connection):
    def __init__(self, conn: AbstractConnection, channel: AbstractChannel) -> None:
        self._conn = conn
        self._ch = channel

    async def publish(self, bodies: Sequence[bytes]) -> None:
        ex = self._ch.default_exchange
        await asyncio.gather(*(
            ex.publish(
                aio_pika.Message(b, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=QUEUE,
            )
            for b in bodies
        ))

    async def consume(self, name: str, batch: int, handle: Handler, stop: asyncio.Event) -> None:
        await self._ch.set_qos(prefetch_count=batch)
        queue = await self._ch.declare_queue(QUEUE, passive=True)

        async def on_message(message: AbstractIncomingMessage) -> None:
            await message.ack()
            handle([message.body])

        tag = await queue.consume(on_message, no_ack=False, consumer_tag=name)
        try:
            await stop.wait()
        finally:
            await queue.cancel(tag)

    async def receive_one(self) -> bytes | None:
        queue = await self._ch.declare_queue(QUEUE, passive=True)
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            return None
        await message.ack()
        return message.body

    async def unacked(self) -> int:
        # Called once every consumer has closed, so unacked deliveries are ready again.
        ch = await self._conn.channel()
        try:
            queue = await ch.declare_queue(QUEUE, passive=True)
            return int(queue.declaration_result.message_count or 0)
        finally:
            await ch.close()

    async def close(self) -> None:
        await self._conn.close()


class RabbitDriver(Driver):
    name = "rabbitmq"
    durability = "quorum queue, persistent messages, publisher confirms"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
        self.epmd: ServerProcess | None = None

    def _env(self) -> dict[str, str]:
        w = self.workdir
        return {
            "HOME": str(w),  # the Erlang cookie lives here
            "RABBITMQ_NODENAME": f"bench{self.port}@localhost",
            "RABBITMQ_USE_LONGNAME": "false",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(w / "mnesia"),
            "RABBITMQ_LOG_BASE": str(w / "log"),
            "RABBITMQ_PID_FILE": str(w / "rabbit.pid"),
            "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(w / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(w / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
        }

    async def start(self) -> None:
        w = self.workdir
        w.mkdir(parents=True, exist_ok=True)
        (w / "rabbitmq.conf").write_text(CONFIG)
        (w / "advanced.config").write_text("[].\n")
        (w / "rabbitmq-env.conf").write_text("")
        (w / "enabled_plugins").write_text("[].\n")
        env = self._env()
        # Our own epmd in the foreground: one started by erl would daemonize and outlive us.
        self.epmd = ServerProcess("epmd", ["epmd", "-port", str(self.epmd_port)],
                                  w / "epmd.log", env=env)
        self.epmd.start()
        self.server = ServerProcess(self.name, [SERVER], w / "server.log", env=env, cwd=w)
        self.server.start()

        async def ready() -> bool:
            conn = await aio_pika.connect(port=self.port, host="127.0.0.1", timeout=2)
            await conn.close()
            return True

        # aiormq logs every refused attempt while the node boots; wait_until reports failures.
        quiet = logging.getLogger("aiormq.connection")
        level, quiet.level = quiet.level, logging.CRITICAL
        try:
            await wait_until(ready, self.server, 600, "accepting AMQP")
        finally:
            quiet.setLevel(level)

    async def stop(self) -> None:
        await super().stop()
        if self.epmd is not None:
            await self.epmd.stop()

    async def _channel(self) -> tuple[AbstractConnection, AbstractChannel]:
        conn = await aio_pika.connect(port=self.port, host="127.0.0.1")
        return conn, await conn.channel(publisher_confirms=True)

    async def reset(self) -> None:
        conn, ch = await self._channel()
        try:
            await ch.queue_delete(QUEUE)
            await ch.declare_queue(QUEUE, durable=True, arguments=QUORUM)
        finally:
            await conn.close()

    async def connect(self) -> Connection:
        conn, ch = await self._channel()
        return RabbitConnection(conn, ch)
