"""`ferry-api`: serve the GPU telemetry query API."""

from __future__ import annotations

import argparse
import logging
import sys

from ferry.kit import logs, serving
from ferry.kit.config import add_log_level, port_number
from ferry.kit.serving import serve
from ferry.telemetry.api.app import create_app
from ferry.telemetry.runtime.arguments import add_storage
from ferry.telemetry.storage.base import StorageError
from ferry.telemetry.storage.opening import store_for

log = logging.getLogger("ferry.telemetry.api")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ferry-api",
        description="Serve the GPU telemetry query API: /api/v1/gpus, "
        "/api/v1/gpus/{uuid}/telemetry, /openapi.json, /healthz, /metrics.",
    )
    add_storage(p)
    p.add_argument("--host", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    p.add_argument("--port", type=port_number, default=8080,
                   help="listen port (default 8080; 0: any free port, logged)")
    add_log_level(p)
    return p


async def run(args: argparse.Namespace) -> int:
    try:
        store = store_for(args.storage)
    except ValueError as e:
        print(f"ferry-api: {e}", file=sys.stderr)
        return 2

    def started(port: int) -> None:
        serving.tune_gc()
        log.info("serving", extra={"host": args.host, "port": port, "engine": store.engine})

    try:
        await serve(create_app(store), args.host, args.port, started=started,
                    stopping=lambda: log.info("stopping"))
    except (StorageError, OSError) as e:
        print(f"ferry-api: cannot start: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.setup("ferry-api", args.log_level)
    return serving.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
