"""The interface every system's driver implements, and the messages they carry.

A driver owns one server (start, stop, restart with its data kept, RSS) and
hands out connections; a connection publishes confirmed batches and runs a
competing consumer that acks every batch before reporting it. The scenarios
only ever talk to this interface, so adding a system is one module.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.processes import ServerProcess

# Called by a consumer with the bodies of messages it has just acked.
Handler = Callable[[Sequence[bytes]], None]

QUEUE = "bench"
GROUP = "workers"
INDEX_DIGITS = 12


def make_body(index: int, size: int) -> bytes:
    """ASCII body of exactly `size` bytes whose first digits are the message's index."""
    head = f"{index:0{INDEX_DIGITS}d}".encode()
    return head + b"x" * (size - len(head))


def body_index(body: bytes) -> int:
    return int(body[:INDEX_DIGITS])


class Connection(ABC):
    """One client connection (or pool, for clients that only offer pools)."""

    @abstractmethod
    async def publish(self, bodies: Sequence[bytes]) -> None:
        """Publish one batch; return once the broker confirmed every message in it."""

    @abstractmethod
    async def consume(self, name: str, batch: int, handle: Handler, stop: asyncio.Event) -> None:
        """Compete for messages of the group as consumer `name`, up to `batch` at a time.

        Acks every received message, then passes the acked bodies to handle();
        returns soon after stop is set.
        """

    @abstractmethod
    async def receive_one(self) -> bytes | None:
        """Receive and ack one message if the broker has one ready (serving check)."""

    @abstractmethod
    async def unacked(self) -> int:
        """Messages of the group not yet acked (ready, in flight or pending), per the broker."""

    @abstractmethod
    async def close(self) -> None: ...


class Driver(ABC):
    """One system under test: a server started on loopback in its own temp dir."""

    name: str
    durability: str

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.server: ServerProcess | None = None
        # The rest of a replicated system (its other nodes, its database): counted in its
        # RSS and CPU like the server, checked alive, stopped after it, last one first.
        self.others: list[ServerProcess] = []

    def processes(self) -> list[ServerProcess]:
        return ([] if self.server is None else [self.server]) + self.others

    @abstractmethod
    async def start(self) -> None:
        """Start the server, keeping data already in workdir; return once it takes clients."""

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        for p in reversed(self.others):
            await p.stop()
        self.others = []

    @abstractmethod
    async def reset(self) -> None:
        """Drop and create the benchmark queue and its consumer group, empty."""

    @abstractmethod
    async def connect(self) -> Connection: ...

    def rss_bytes(self) -> int:
        return sum(p.rss_bytes() for p in self.processes())

    def cpu_seconds(self) -> float:
        """CPU time the system has used so far (process trees, all threads)."""
        return sum(p.cpu_seconds() for p in self.processes())

    def check_alive(self) -> None:
        for p in self.processes():
            p.check_alive()
