"""`ferry-collector`: consume telemetry rows from a Ferry queue into storage."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

from aiohttp import web

from ferry.broker.client import BrokerClient, BrokerError, NotFound
from ferry.broker.models import GroupSettings
from ferry.kit import logs, serving
from ferry.kit.config import add_log_level, add_metrics_address, positive_float, positive_int
from ferry.kit.health import health_handler, metrics_handler
from ferry.kit.serving import listening, stop_event
from ferry.telemetry.collector.collecting import Collector, Metrics, Settings
from ferry.telemetry.runtime.arguments import add_broker, add_storage, require_broker
from ferry.telemetry.storage.base import StorageError
from ferry.telemetry.storage.opening import store_for

log = logging.getLogger("ferry.telemetry.collector")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ferry-collector",
        description="Consume telemetry rows from a Ferry queue as one of the competing "
        "consumers of a group, store them in batches (idempotently: a redelivery never "
        "duplicates a row) and ack each message only after its batch has committed. "
        "Messages that are not telemetry rows are nacked until the broker dead-letters them. "
        "SIGTERM drains: received messages are stored and acked, the rest handed back.",
    )
    add_broker(p)
    p.add_argument("--group", default="collectors", help="consumer group (default collectors)")
    p.add_argument(
        "--consumer",
        default=f"{socket.gethostname()}-{os.getpid()}",
        help="this consumer's name (default host-pid)",
    )
    add_storage(p)
    p.add_argument("--create", action="store_true", help="create the queue and group if missing")
    p.add_argument(
        "--max-deliveries",
        type=positive_int,
        help="with --create: deliveries before a message is dead-lettered",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=1000,
        help="rows per write (default 1000; a many-rows message counts all its rows)",
    )
    p.add_argument(
        "--flush-interval",
        type=positive_float,
        default=0.2,
        help="seconds a partial batch waits for more (default 0.2)",
    )
    p.add_argument(
        "--max-in-flight",
        type=positive_int,
        default=1000,
        help="deliveries held at once (default 1000)",
    )
    p.add_argument(
        "--visibility-timeout-ms", type=positive_int, help="lease length (default: the group's)"
    )
    # Port 0 by default: two collectors on one machine must not collide (pods set theirs).
    add_metrics_address(p, "--http-port", port=0)
    add_log_level(p)
    return p


async def ensure(client: BrokerClient, args: argparse.Namespace) -> None:
    try:
        await client.queue_stats(args.queue)
    except NotFound:
        await client.put_queue(args.queue)
    try:
        await client.group_stats(args.queue, args.group)
    except NotFound:
        await client.put_group(
            args.queue, args.group, GroupSettings(max_deliveries=args.max_deliveries)
        )


async def collect(args: argparse.Namespace) -> int:
    stop = stop_event()
    try:
        store = store_for(args.storage)
    except ValueError as e:
        print(f"ferry-collector: {e}", file=sys.stderr)
        return 2
    settings = Settings(
        queue=args.queue,
        group=args.group,
        consumer=args.consumer,
        batch_size=args.batch_size,
        flush_interval=args.flush_interval,
        max_in_flight=args.max_in_flight,  # deliveries; a batch counts rows
        visibility_timeout_ms=args.visibility_timeout_ms,
    )
    metrics = Metrics()
    try:
        await store.open()
    except StorageError as e:
        print(f"ferry-collector: {e}", file=sys.stderr)
        return 1
    try:
        async with BrokerClient(args.broker_url, token=args.broker_token) as client:
            collector = Collector(settings, client, store, stop, metrics=metrics)

            async def healthy() -> str | None:
                if collector.storage_problem:
                    return collector.storage_problem
                return None if collector.running else "not consuming"

            app = web.Application()
            app.router.add_get("/metrics", metrics_handler(metrics.registry))
            app.router.add_get("/healthz", health_handler(healthy))
            async with listening(app, args.metrics_host, args.metrics_port) as port:
                if args.create:
                    await ensure(client, args)
                log.info(
                    "collecting",
                    extra={
                        "queue": args.queue,
                        "group": args.group,
                        "consumer": args.consumer,
                        "engine": store.engine,
                        "metrics_port": port,
                    },
                )
                serving.tune_gc()
                await collector.run()
    except BrokerError as e:
        print(f"ferry-collector: broker: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"ferry-collector: {e}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    require_broker(p, args)
    if args.max_deliveries is not None and not args.create:
        p.error("--max-deliveries needs --create (otherwise the group's setting applies)")
    logs.setup("ferry-collector", args.log_level)
    return serving.run(collect(args))


if __name__ == "__main__":
    sys.exit(main())
