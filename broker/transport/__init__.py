"""The broker's HTTP/SSE/WebSocket transport (aiohttp): thin routes over core + store."""

from ferry.broker.transport.app import build_app, open_postgres, open_runtime
from ferry.broker.transport.runtime import RUNTIME, Runtime

__all__ = ["RUNTIME", "Runtime", "build_app", "open_postgres", "open_runtime"]
