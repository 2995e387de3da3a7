"""`ferry-streamer`: publish DCGM exporter CSV rows to a Ferry queue."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from contextlib import AsyncExitStack
from pathlib import Path

from aiohttp import web

from ferry.broker.client import BrokerClient, BrokerError, NotFound
from ferry.kit import logs, serving
from ferry.kit.config import (
    add_log_level,
    non_negative_int,
    port_number,
    positive_float,
    positive_int,
)
from ferry.kit.health import health_handler, metrics_handler
from ferry.kit.serving import listening, stop_event
from ferry.telemetry.parsing.messages import MAX_ROWS_PER_MESSAGE
from ferry.telemetry.parsing.pacing import Pace
from ferry.telemetry.runtime.arguments import add_broker, require_broker
from ferry.telemetry.streamer.checkpoints import CheckpointError
from ferry.telemetry.streamer.reading import InputError
from ferry.telemetry.streamer.streaming import ROWS_PER_MESSAGE, Metrics, Settings, Streamer
from ferry.telemetry.streamer.uploading import MAX_UPLOAD_BYTES, upload_handler

log = logging.getLogger("ferry.telemetry.streamer")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ferry-streamer",
        description="Publish DCGM exporter CSV rows to a Ferry queue: validated (bad rows are "
        "counted and reported, never published), up to --rows-per-message rows of one GPU per "
        "message keyed by GPU uuid, with a dedup id derived from the rows so a replay never "
        "duplicates. Prints a JSON "
        "summary on stdout when done.",
    )
    p.add_argument(
        "source",
        type=Path,
        nargs="?",
        help="a CSV file, or a directory of *.csv files; without it, the streamer only "
        "publishes what is POSTed to /api/v1/upload (needs --http-port)",
    )
    add_broker(p)
    p.add_argument("--create-queue", action="store_true", help="create the queue if missing")
    p.add_argument("--rate", type=positive_float, help="rows per second (default: no limit)")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=Pace.batch_size,
        help=f"rows per publish when unpaced (default {Pace.batch_size})",
    )
    p.add_argument(
        "--rows-per-message",
        type=positive_int,
        default=ROWS_PER_MESSAGE,
        help=f"rows of one GPU per message, at most {MAX_ROWS_PER_MESSAGE} (default "
        f"{ROWS_PER_MESSAGE}; 1 publishes each row as its own message)",
    )
    p.add_argument(
        "--loop",
        action="store_true",
        help="replay the input forever, each pass shifted in time to follow the previous one",
    )
    p.add_argument("--loops", type=positive_int, help="with --loop: stop after this many passes")
    p.add_argument(
        "--stay",
        action="store_true",
        help="when done, keep running (serving /healthz) until SIGTERM instead of exiting: "
        "for Deployments and StatefulSets, which restart a process that exits",
    )
    p.add_argument(
        "--instance-index",
        type=non_negative_int,
        default=0,
        help="this streamer's number, 0..count-1 (default 0)",
    )
    p.add_argument(
        "--instance-count",
        type=positive_int,
        default=1,
        help="streamers sharing the input; each GPU's rows go to one of them",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        help="file recording progress; a restart with the same file resumes where it stopped",
    )
    p.add_argument(
        "--http-port",
        type=port_number,
        help="serve /metrics, /healthz and POST /api/v1/upload (text/csv) on this port",
    )
    p.add_argument("--http-host", default="0.0.0.0", help="address for --http-port")
    p.add_argument(
        "--progress-every",
        type=positive_float,
        default=2.0,
        help="seconds between progress log lines (default 2)",
    )
    add_log_level(p)
    return p


def settings_of(args: argparse.Namespace) -> Settings:
    if args.instance_index >= args.instance_count:
        raise ValueError(
            f"--instance-index {args.instance_index} must be below --instance-count "
            f"{args.instance_count}"
        )
    if args.rows_per_message > MAX_ROWS_PER_MESSAGE:
        raise ValueError(f"--rows-per-message must be at most {MAX_ROWS_PER_MESSAGE}")
    if args.loops is not None and not args.loop:
        raise ValueError("--loops needs --loop")
    return Settings(
        source=args.source,
        queue=args.queue,
        instance_index=args.instance_index,
        instance_count=args.instance_count,
        pace=Pace(rate=args.rate, batch_size=args.batch_size),
        loop=args.loop,
        max_loops=args.loops,
        checkpoint=args.checkpoint,
        progress_every=args.progress_every,
        rows_per_message=args.rows_per_message,
    )


async def stream(args: argparse.Namespace, settings: Settings | None) -> int:
    stop = stop_event()
    metrics = Metrics()
    try:
        async with (BrokerClient(args.broker_url, token=args.broker_token) as client,
                    AsyncExitStack() as http):
            if args.http_port is not None:
                port = await http.enter_async_context(listening(
                    _app(client, args.queue, metrics), args.http_host, args.http_port))
                log.info("serving /metrics, /healthz and uploads", extra={"port": port})
            if args.create_queue:
                try:
                    await client.queue_stats(args.queue)
                except NotFound:
                    await client.put_queue(args.queue)
            if settings is None:
                log.info("serving uploads until SIGTERM")
                await stop.wait()
                return 0
            streamer = Streamer(settings, client, stop, metrics=metrics)
            serving.tune_gc()
            summary = await streamer.run()
            print(json.dumps(summary.model_dump()), flush=True)
            if args.stay and summary.complete:
                log.info("done; staying up until SIGTERM")
                await stop.wait()
    except (InputError, CheckpointError) as e:
        print(f"ferry-streamer: {e}", file=sys.stderr)
        return 2
    except BrokerError as e:
        print(
            f"ferry-streamer: broker: {e} (progress is checkpointed; rerun to resume)",
            file=sys.stderr,
        )
        return 1
    return 0


def _app(client: BrokerClient, queue: str, metrics: Metrics) -> web.Application:
    app = web.Application(client_max_size=MAX_UPLOAD_BYTES)
    app.router.add_get("/metrics", metrics_handler(metrics.registry))
    app.router.add_get("/healthz", health_handler())
    app.router.add_post("/api/v1/upload", upload_handler(client, queue, metrics))
    return app


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    require_broker(p, args)
    if args.source is None and args.http_port is None:
        p.error("give a source file or directory, or --http-port to take uploads")
    try:
        settings = settings_of(args) if args.source is not None else None
    except ValueError as e:
        p.error(str(e))
    logs.setup("ferry-streamer", args.log_level)
    return serving.run(stream(args, settings))


if __name__ == "__main__":
    sys.exit(main())
