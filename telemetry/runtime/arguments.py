"""Command-line pieces shared by the telemetry commands: bad values fail with a clear message."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable

BROKER_ENV = "FERRY_BROKER_URL"
TOKEN_ENV = "FERRY_BROKER_TOKEN"
STORAGE_ENV = "FERRY_STORAGE"
DEFAULT_QUEUE = "telemetry"


def int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {n}")
        return n

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def positive_float(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (x > 0 and math.isfinite(x)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return x


def add_broker(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--broker",
        default=os.environ.get(BROKER_ENV),
        help=f"broker URL, e.g. http://127.0.0.1:8080 (env {BROKER_ENV})",
    )
    p.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help=f"bearer token, when the broker requires one (env {TOKEN_ENV})",
    )
    p.add_argument("--queue", default=DEFAULT_QUEUE, help=f"queue name (default {DEFAULT_QUEUE})")


def require_broker(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.broker:
        p.error(f"--broker is required (or set {BROKER_ENV})")


def add_storage(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        default=os.environ.get(STORAGE_ENV, "sqlite://telemetry.db"),
        help=f"sqlite:///path/file.db or postgresql://user@host/db (env {STORAGE_ENV})",
    )


def add_log_level(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
