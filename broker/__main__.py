"""`ferry-broker` / `python -m ferry.broker`: run one durable broker."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
import time
from pathlib import Path

from aiohttp import web

from ferry.broker import logs
from ferry.broker.store import StoreError
from ferry.broker.transport import build_app, open_runtime

log = logging.getLogger("ferry.broker")

GC_GEN0_THRESHOLD = 10_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="ferry-broker",
        description="Run a Ferry broker: durable queues with consumer groups, leases and DLQs.",
    )
    p.add_argument("--data-dir", required=True, help="directory for the SQLite store")
    p.add_argument("--port", type=int, default=7070, help="TCP port (default 7070)")
    p.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    p.add_argument(
        "--token-file",
        help="file with bearer tokens, one per line (surrounding spaces ignored; a line "
             "whose first non-blank character is # is a comment); when set, every route but "
             "/healthz and /readyz requires `Authorization: Bearer <token>`",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--drain-seconds", type=float, default=10.0,
        help="on SIGTERM, how long in-flight requests may take to finish (default 10)",
    )
    return p.parse_args(argv)


def tune_gc() -> None:
    """Fewer, cheaper collections: the hot paths allocate many short-lived containers.

    Everything built at startup (modules, pydantic schemas, the app) is moved out of
    the collector's sight, and the youngest generation collects every 10,000
    allocations instead of 700, so most request objects are freed by refcount before
    a collection ever walks them. Measured in `make bench`: broker CPU per message
    -13%, end-to-end +12%.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 10, 10)


def read_tokens(path: str) -> frozenset[str]:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise SystemExit(f"ferry-broker: cannot read --token-file {path}: {e.strerror}") from None
    stripped = (line.strip() for line in lines)
    tokens = frozenset(t for t in stripped if t and not t.startswith("#"))
    if not tokens:
        raise SystemExit(f"ferry-broker: --token-file {path} holds no token")
    return tokens


async def serve(args: argparse.Namespace, tokens: frozenset[str] | None) -> None:
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    try:
        rt = open_runtime(args.data_dir, loop, args.log_level)
    except StoreError as e:
        raise SystemExit(f"ferry-broker: {e}") from e
    rt.tokens = tokens
    app = build_app(rt)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=args.drain_seconds)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=1024, reuse_address=True)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        rt.store.close()
        raise SystemExit(f"ferry-broker: cannot listen on {args.host}:{args.port}: {e}") from e
    tune_gc()
    log.info(
        "serving", extra={"host": args.host, "port": args.port, "data_dir": args.data_dir,
                          "queues": len(rt.core.queues),
                          "startup_s": round(time.perf_counter() - t0, 3),
                          "auth": tokens is not None},
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining", extra={"timeout_s": args.drain_seconds})
    rt.draining = True
    rt.signals.notify_all()
    await runner.cleanup()
    rt.store.close()
    log.info("stopped", extra={"commits": rt.store.writer.batches,
                               "writes": rt.store.writer.items})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup(args.log_level)
    tokens = read_tokens(args.token_file) if args.token_file else None
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep working without it
        asyncio.run(serve(args, tokens))
    else:
        uvloop.run(serve(args, tokens))
    return 0


if __name__ == "__main__":
    sys.exit(main())
