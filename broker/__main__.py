"""`ferry-broker` / `python -m ferry.broker`: run one durable broker."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import time
from pathlib import Path

from ferry.broker.malloc import release_large_buffers
from ferry.broker.store import StoreError
from ferry.broker.store.postgres.schema import DEFAULT_SCHEMA, check_schema
from ferry.broker.transport import Runtime, build_app, open_postgres, open_runtime
from ferry.broker.transport.app import health_check
from ferry.broker.transport.connections import (
    HEADER_TIMEOUT_S,
    MAX_CONNECTIONS,
    Limited,
    usable_connections,
)
from ferry.broker.transport.keyring import Keyring
from ferry.broker.transport.memory import MemoryBudget
from ferry.broker.transport.runtime import BATCH_BYTES, BODY_TIMEOUT_S, MEMORY_BUDGET_BYTES
from ferry.broker.transport.tokens import Grant, TokenFileError, parse_token_files
from ferry.kit import logs, serving
from ferry.kit.config import DEFAULT_BROKER_PORT, add_log_level, port_number, positive_int
from ferry.kit.serving import serve

log = logging.getLogger("ferry.broker")

EXIT_FAILED = 1  # a failure that would recur on every start (see _until_stopped_or_lost)
LOST_GRACE_S = 0.5  # after the store is lost: for the failed requests' 503s to be sent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="ferry-broker",
        description="Run a Ferry broker: durable queues with consumer groups, leases and DLQs.",
    )
    store = p.add_argument_group("storage (one of)")
    store.add_argument("--data-dir", help="directory for the embedded SQLite store")
    store.add_argument(
        "--postgres", default=os.environ.get("FERRY_POSTGRES") or None, metavar="URI",
        help="PostgreSQL libpq URI (env FERRY_POSTGRES); brokers on one database and "
             "--postgres-schema elect one leader, the others stand by. Several hosts with "
             "target_session_attrs=read-write follow a database failover",
    )
    store.add_argument(
        "--postgres-schema", default=os.environ.get("FERRY_POSTGRES_SCHEMA") or DEFAULT_SCHEMA,
        metavar="NAME", help=f"the queue set: a PostgreSQL schema (env FERRY_POSTGRES_SCHEMA; "
                             f"default {DEFAULT_SCHEMA})",
    )
    p.add_argument("--port", type=port_number, default=DEFAULT_BROKER_PORT,
                   help=f"TCP port (default {DEFAULT_BROKER_PORT}; 0: any free port, logged)")
    p.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    p.add_argument(
        "--token-file",
        help="file (or directory of files, e.g. a mounted Secret) with bearer tokens, one "
             "a line: `TOKEN` (an admin token) or `TOKEN "
             "RIGHTS[,RIGHTS] [queues=GLOB[,GLOB]] [rate=N/s]`, rights admin, publish, "
             "consume, read (a line whose first non-blank character is # is a comment); "
             "when set, every route but /healthz and /readyz requires `Authorization: "
             "Bearer <token>`; a malformed line stops the broker (exit 1, naming the line)",
    )
    add_log_level(p)
    p.add_argument(
        "--drain-seconds", type=float, default=10.0,
        help="on SIGTERM, how long in-flight requests may take to finish (default 10)",
    )
    p.add_argument(
        "--batch-bytes", type=positive_int, default=BATCH_BYTES,
        help="documents in one receive, pushed batch (SSE, WebSocket) or dead-letter page, "
             "besides their count; one larger message still goes alone "
             f"(default {BATCH_BYTES >> 20} MiB)",
    )
    p.add_argument(
        "--memory-budget-bytes", type=positive_int, default=MEMORY_BUDGET_BYTES,
        help="request bodies and delivery batches held at once by all requests; a request "
             "over it while others hold it is answered 503 with Retry-After, untouched "
             f"(default {MEMORY_BUDGET_BYTES >> 20} MiB)",
    )
    p.add_argument(
        "--max-connections", type=positive_int, default=MAX_CONNECTIONS,
        help="connections served at once (fewer if the descriptor limit cannot be raised); "
             "one more gets 503 with Retry-After, except /healthz and /readyz, which are "
             f"answered (default {MAX_CONNECTIONS})",
    )
    p.add_argument(
        "--header-timeout-seconds", type=float, default=HEADER_TIMEOUT_S,
        help="a connection must send a whole request head within this long of opening or "
             "of its previous response; idle keep-alive connections close then too "
             f"(default {HEADER_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--body-timeout-seconds", type=float, default=BODY_TIMEOUT_S,
        help="a request body that stops arriving for this long gets 408 and its "
             f"connection is closed (default {BODY_TIMEOUT_S:g})",
    )
    args = p.parse_args(argv)
    if (args.data_dir is None) == (args.postgres is None):
        p.error("give exactly one of --data-dir and --postgres (or FERRY_POSTGRES)")
    if args.postgres is not None:
        try:
            check_schema(args.postgres_schema)
        except ValueError as e:
            p.error(str(e))
    return args


def read_tokens(path: str) -> dict[str, Grant]:
    """The tokens of --token-file with their grants; a bad file stops the broker here.

    A directory is read file by file in name order (not names starting with a dot): a
    Kubernetes Secret mounted whole, one token file per key.
    """
    where = Path(path)
    try:
        files = sorted(p for p in where.iterdir() if not p.name.startswith(".")
                       and p.is_file()) if where.is_dir() else [where]
        texts = [("" if f == where else f.name, f.read_text()) for f in files]
    except OSError as e:
        raise SystemExit(f"ferry-broker: cannot read --token-file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise SystemExit(f"ferry-broker: --token-file {path} is not UTF-8 text") from None
    try:
        grants = parse_token_files(texts)
    except TokenFileError as e:  # names the line, never the token
        raise SystemExit(f"ferry-broker: --token-file {path}: {e}") from None
    if not grants:
        raise SystemExit(f"ferry-broker: --token-file {path} holds no token")
    return grants


async def run(args: argparse.Namespace, tokens: dict[str, Grant] | None) -> int:
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    try:
        if args.postgres is not None:
            # Who leads, as standbys and `kubectl get queues` show it.
            holder = os.environ.get("POD_NAME") or f"{socket.gethostname()}:{args.port}"
            rt = open_postgres(args.postgres, args.postgres_schema, holder)
        else:
            rt = open_runtime(args.data_dir, loop, args.log_level)
    except StoreError as e:
        raise SystemExit(f"ferry-broker: {e}") from e
    rt.tokens = None if tokens is None else Keyring(tokens)
    rt.batch_bytes = args.batch_bytes
    rt.memory = MemoryBudget(args.memory_budget_bytes)
    rt.body_timeout_s = args.body_timeout_seconds
    limit = usable_connections(args.max_connections)

    def started(port: int) -> None:
        serving.tune_gc()
        log.info(
            "serving", extra={"host": args.host, "port": port, "engine": rt.store.name,
                              "role": rt.role.value, "queues": len(rt.core.queues),
                              "startup_s": round(time.perf_counter() - t0, 3),
                              "auth": tokens is not None, "max_connections": limit},
        )

    def draining() -> None:
        log.info("draining", extra={"timeout_s": args.drain_seconds})
        rt.draining = True
        rt.signals.notify_all()

    try:
        await serve(build_app(rt), args.host, args.port, started=started, stopping=draining,
                    until=lambda stop: _until_stopped_or_lost(rt, stop),
                    drain_seconds=args.drain_seconds, backlog=1024,
                    keepalive_timeout=args.header_timeout_seconds,
                    admit=lambda server: Limited(server, limit, health_check(rt)))
    except OSError as e:
        raise SystemExit(f"ferry-broker: cannot listen on {args.host}:{args.port}: {e}") from e
    finally:
        await rt.store.aclose()
    log.info("stopped", extra={"commits": rt.store.writer.batches,
                               "writes": rt.store.writer.items, "failure": rt.failure})
    return EXIT_FAILED if rt.failure is not None else 0


async def _until_stopped_or_lost(rt: Runtime, stop: asyncio.Event) -> None:
    """Wait for SIGTERM; if the store is lost or the broker fails first, fail-stop.

    Lost means a commit failed (a full disk, an I/O error; PostgreSQL: an unknown
    outcome or fenced by a newer leader) or the store's writer is gone (the
    committer process died; the leader lock's session ended): the core may hold
    changes the store never got, so nothing more is answered from it (Runtime.fail:
    503s, health failing). After a moment for the failed requests' 503s to go out,
    the process replaces itself (same pid, same arguments) and rebuilds from the
    store: the embedded engine is ready again by itself once its disk has room
    (a new committer), PostgreSQL comes back as a standby. Other failures (a
    background task died: a bug, or a store it cannot read) would recur on
    every start: the broker drains and exits 1 for its supervisor, with backoff.
    """
    stopped = asyncio.create_task(stop.wait())
    failed = asyncio.create_task(rt.failed.wait())
    await asyncio.wait((stopped, failed), return_when=asyncio.FIRST_COMPLETED)
    for t in (stopped, failed):
        t.cancel()
    if stop.is_set() or rt.lost is None:
        return  # a signal or a failure: drain, then exit (0 or 1)
    await asyncio.sleep(LOST_GRACE_S)  # Runtime.fail ran at the loss (Engine.on_lost)
    log.error("store lost: starting over from the store", extra={"reason": rt.lost})
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, "-m", "ferry.broker", *_ARGV])


_ARGV: list[str] = []


def main(argv: list[str] | None = None) -> int:
    _ARGV[:] = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    logs.setup("ferry-broker", args.log_level)
    release_large_buffers()
    tokens = read_tokens(args.token_file) if args.token_file else None
    return serving.run(run(args, tokens))


if __name__ == "__main__":
    sys.exit(main())
