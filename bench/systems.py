"""Names of the systems under test -> their drivers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.drivers.base import Driver
from bench.drivers.ferry import FerryDriver
from bench.drivers.nats_jetstream import NatsDriver
from bench.drivers.rabbitmq import RabbitDriver
from bench.drivers.redis_streams import RedisDriver

FACTORIES: dict[str, Callable[[Path], Driver]] = {
    "ferry": FerryDriver,
    "ferry-poll": lambda w: FerryDriver(w, "poll"),  # receive/ack batches instead of a stream
    "redis-everysec": lambda w: RedisDriver(w, "everysec"),
    "redis-always": lambda w: RedisDriver(w, "always"),
    "nats": NatsDriver,
    "rabbitmq": RabbitDriver,
    # Replicated: Ferry on PostgreSQL with a synchronous standby, against 3-node clusters.
    "ferry-pg": lambda w: FerryDriver(w, engine="postgres"),
    "nats-r3": lambda w: NatsDriver(w, replicas=3),
    "rabbitmq-r3": lambda w: RabbitDriver(w, nodes=3),
}


def make_driver(name: str, workdir: Path) -> Driver:
    try:
        factory = FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown system {name!r}; known: {', '.join(FACTORIES)}") from None
    return factory(workdir)
