"""Command-line pieces shared by the telemetry commands (the names follow ferry.kit.config)."""

from __future__ import annotations

import argparse

from ferry.kit.config import BROKER_URL_ENV, STORAGE_ENV, add_broker_url, env

DEFAULT_QUEUE = "telemetry"


def add_broker(p: argparse.ArgumentParser) -> None:
    add_broker_url(p, "--broker", required=True)
    p.add_argument("--queue", default=DEFAULT_QUEUE, help=f"queue name (default {DEFAULT_QUEUE})")


def require_broker(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.broker_url:
        p.error(f"--broker-url is required (or set {BROKER_URL_ENV})")


def add_storage(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        default=env(STORAGE_ENV, "sqlite://telemetry.db", old="FERRY_DATABASE_URL"),
        help=f"sqlite:///path/file.db or postgresql://user@host/db (env {STORAGE_ENV})",
    )
