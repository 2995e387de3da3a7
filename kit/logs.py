"""Structured logs: one JSON object per line on stderr, the same schema in every program.

    {"ts": "2026-11-30T15:46:46.123Z", "level": "info", "service": "ferry-broker",
     "logger": "ferry.broker", "msg": "serving", ...fields passed with extra=...}

A failure adds "exc" (the formatted traceback).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

# Attributes every LogRecord has; anything else was passed via `extra=` and is data.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(
            (k, v) for k, v in record.__dict__.items() if k not in _STANDARD and k[0] != "_"
        )
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def setup(service: str, level: str = "info") -> None:
    """Send every logger's records to stderr as JSON lines, at `level` and above."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log repeats what our metrics count; keep it for debugging only.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
