"""Async client of the Ferry broker: the only way the rest of Ferry talks to a broker.

async with BrokerClient("http://127.0.0.1:7070") as client:
    await client.put_queue("jobs")
    await client.put_group("jobs", "workers")
    await client.publish("jobs", [OutgoingMessage(body={"n": 1})])
    async with client.consumer("jobs", "workers", "worker-1") as consumer:
        async for delivery in consumer:
            ...
            await consumer.ack(delivery)
"""

from ferry.broker.client.api import BrokerClient
from ferry.broker.client.consuming import Consumer, Mode
from ferry.broker.client.errors import (
    BrokerError,
    Forbidden,
    NotFound,
    RateLimited,
    Unavailable,
)
from ferry.broker.client.retrying import RetryPolicy

__all__ = [
    "BrokerClient",
    "BrokerError",
    "Consumer",
    "Forbidden",
    "Mode",
    "NotFound",
    "RateLimited",
    "RetryPolicy",
    "Unavailable",
]
