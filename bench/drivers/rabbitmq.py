"""RabbitMQ (Debian's rabbitmq-server) driven by aio-pika.

Queue = a durable quorum queue (Raft log fsynced before the confirm), messages
persistent, publisher confirms on; a batch is `batch` publishes whose confirms
are all awaited. A consumer uses basic.qos prefetch = batch and acks every
delivery. The node runs as its own Erlang node (own name, AMQP/dist/epmd
ports, RABBITMQ_MNESIA_BASE, HOME for the cookie) so it never meets a
system-wide RabbitMQ.
`rabbitmq-r3`: three such nodes on this host (one epmd, one cookie), joined into
one cluster by classic-config peer discovery; the quorum queue gets a member
on each (x-quorum-initial-group-size 3), so a confirm means a majority of the
three fsynced the message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from pamqp.common import FieldTable
from testsupport.ports import free_port

from bench.drivers.base import QUEUE, Connection, Driver, Handler
from bench.processes import ServerProcess, retrying, wait_until

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # the wrapper in /usr/sbin switches user
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
CONFIG = """\
loopback_users = none
disk_free_limit.absolute = 50MB
vm_memory_high_watermark.relative = 0.4
log.console = false
log.file.level = warning
"""
QUORUM: FieldTable = {"x-queue-type": "quorum"}
DECLARE_WAIT_S = 120.0


def _cluster_not_formed(error: Exception) -> bool:
    return (isinstance(error, aio_pika.exceptions.ConnectionClosed)
            and "cluster_not_formed" in str(error))


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
    def __init__(self, workdir: Path, nodes: int = 1) -> None:
        super().__init__(workdir)
        self.nodes = nodes
        self.name = "rabbitmq" if nodes == 1 else f"rabbitmq-r{nodes}"
        self.durability = "quorum queue, persistent messages, publisher confirms" + (
            "" if nodes == 1 else f"; {nodes} nodes, confirmed once a majority fsynced it")
        self.amqp_ports = [free_port() for _ in range(nodes)]
        self.dist_ports = [free_port() for _ in range(nodes)]
        self.port, self.epmd_port = self.amqp_ports[0], free_port()
        self.epmd: ServerProcess | None = None

    def _node(self, i: int) -> str:
        return f"bench{self.amqp_ports[i]}@localhost"

    def _env(self, i: int = 0) -> dict[str, str]:
        w, n = self.workdir, self.workdir / f"node{i}"
        return {
            "HOME": str(w),  # the Erlang cookie lives here, shared by the nodes
            "RABBITMQ_NODENAME": self._node(i),
            "RABBITMQ_USE_LONGNAME": "false",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_ports[i]),
            "RABBITMQ_DIST_PORT": str(self.dist_ports[i]),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(n / "mnesia"),
            "RABBITMQ_LOG_BASE": str(n / "log"),
            "RABBITMQ_PID_FILE": str(n / "rabbit.pid"),
            "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(w / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(w / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
        }

    def _config(self) -> str:
        if self.nodes == 1:
            return CONFIG
        peers = "".join(f"cluster_formation.classic_config.nodes.{i + 1} = {self._node(i)}\n"
                        for i in range(self.nodes))
        return CONFIG + "cluster_formation.peer_discovery_backend = classic_config\n" + peers

    async def start(self) -> None:
        w = self.workdir
        w.mkdir(parents=True, exist_ok=True)
        (w / "rabbitmq.conf").write_text(self._config())
        (w / "advanced.config").write_text("[].\n")
        (w / "rabbitmq-env.conf").write_text("")
        (w / "enabled_plugins").write_text("[].\n")
        cookie = w / ".erlang.cookie"
        if not cookie.exists():  # written once, before any node could race to make its own
            cookie.write_text(secrets.token_hex(16))
            cookie.chmod(0o400)
        env = self._env()
        # Our own epmd in the foreground: one started by erl would daemonize and outlive us.
        self.epmd = ServerProcess("epmd", ["epmd", "-port", str(self.epmd_port)],
                                  w / "epmd.log", env=env)
        self.epmd.start()
        # One node after the other: each later one finds the first and joins its cluster
        # (started at once, two could each form a cluster of their own).
        nodes = [ServerProcess(f"{self.name}-{i}", [SERVER], w / f"server{i}.log",
                               env=self._env(i), cwd=w) for i in range(self.nodes)]
        self.server, self.others = nodes[0], nodes[1:]
        for node, port in zip(nodes, self.amqp_ports, strict=True):
            node.start()
            await self._accepting(node, port)
        if self.nodes > 1:
            await wait_until(self._clustered, nodes[0], 600, f"{self.nodes} nodes clustered")

    @staticmethod
    async def _accepting(node: ServerProcess, port: int) -> None:
        async def ready() -> bool:
            conn = await aio_pika.connect(port=port, host="127.0.0.1", timeout=2)
            await conn.close()
            return True

        # aiormq logs every refused attempt while the node boots; wait_until reports failures.
        quiet = logging.getLogger("aiormq.connection")
        level, quiet.level = quiet.level, logging.CRITICAL
        try:
            await wait_until(ready, node, 600, "accepting AMQP")
        finally:
            quiet.setLevel(level)

    async def _clustered(self) -> bool:
        """Every node runs in the first node's cluster (rabbitmqctl cluster_status)."""
        proc = await asyncio.create_subprocess_exec(
            CTL, "-n", self._node(0), "cluster_status", "--formatter", "json",
            env={**os.environ, **self._env()}, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            return False
        running = json.loads(out).get("running_nodes", [])
        return sorted(running) == sorted(self._node(i) for i in range(self.nodes))

    async def stop(self) -> None:
        await super().stop()
        if self.epmd is not None:
            await self.epmd.stop()

    async def _channel(self) -> tuple[AbstractConnection, AbstractChannel]:
        conn = await aio_pika.connect(port=self.port, host="127.0.0.1")
        return conn, await conn.channel(publisher_confirms=True)

    async def reset(self) -> None:
        async def declare() -> None:
            conn, ch = await self._channel()
            try:
                await ch.queue_delete(QUEUE)
                await ch.declare_queue(QUEUE, durable=True, arguments={
                    **QUORUM, "x-quorum-initial-group-size": self.nodes})
            finally:
                await conn.close()

        # Clustered: "cluster_not_formed" while a (loaded, late) node is counted away; the
        # declaration succeeds once it answers again.
        await retrying(declare, _cluster_not_formed, DECLARE_WAIT_S, 0.5)

    async def connect(self) -> Connection:
        conn, ch = await self._channel()
        return RabbitConnection(conn, ch)
