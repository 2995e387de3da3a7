"""Flags and environment variables: the same name for the same thing in every program.

| what                        | flag                          | environment                |
|-----------------------------|-------------------------------|----------------------------|
| broker URL                  | --broker-url                  | FERRY_BROKER_URL           |
| broker bearer token         | --broker-token                | FERRY_BROKER_TOKEN         |
| telemetry storage           | --storage                     | FERRY_STORAGE              |
| /metrics + /healthz address | --metrics-host --metrics-port | FERRY_METRICS_HOST / _PORT |
| log level                   | --log-level                   | FERRY_LOG_LEVEL            |

The table in docs/configuration.md is the user's copy of this one. Names renamed for
that convention keep working for one release and say so on stderr (`renamed`).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, overload

DEFAULT_BROKER_PORT = 7070
DEFAULT_BROKER_URL = f"http://127.0.0.1:{DEFAULT_BROKER_PORT}"

BROKER_URL_ENV = "FERRY_BROKER_URL"
BROKER_TOKEN_ENV = "FERRY_BROKER_TOKEN"
STORAGE_ENV = "FERRY_STORAGE"
METRICS_HOST_ENV = "FERRY_METRICS_HOST"
METRICS_PORT_ENV = "FERRY_METRICS_PORT"
LOG_LEVEL_ENV = "FERRY_LOG_LEVEL"
LOG_LEVELS = ("debug", "info", "warning", "error")


def deprecated(old: str, new: str, prog: str | None = None) -> None:
    """Say once, on stderr, that an old flag or variable name still works but is going."""
    who = f"{prog}: " if prog else ""
    print(f"{who}{old} is deprecated and goes in the next release; use {new}", file=sys.stderr)


@overload
def env(name: str, default: str, *, old: str | None = None,
        environ: Mapping[str, str] = ...) -> str: ...
@overload
def env(name: str, default: None = None, *, old: str | None = None,
        environ: Mapping[str, str] = ...) -> str | None: ...
def env(name: str, default: str | None = None, *, old: str | None = None,
        environ: Mapping[str, str] = os.environ) -> str | None:
    """`name` from the environment, else the deprecated `old` (with a warning), else default."""
    if name in environ:
        return environ[name]
    if old is not None and old in environ:
        deprecated(old, name)
        return environ[old]
    return default


class _Renamed(argparse.Action):
    """Stores like `store`, and warns when the option was spelled by an old name."""

    def __init__(self, option_strings: Sequence[str], dest: str, old: Sequence[str] = (),
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.old = tuple(old)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        if option_string in self.old:
            deprecated(option_string, self.option_strings[0], parser.prog)
        setattr(namespace, self.dest, values)


def renamed(parser: argparse.ArgumentParser | argparse._ArgumentGroup, new: str,
            *old: str, **kwargs: Any) -> argparse.Action:
    """Add option `new`, still accepting the `old` spellings (with a deprecation warning)."""
    return parser.add_argument(new, *old, action=_Renamed, old=old, **kwargs)


def add_broker_url(p: argparse.ArgumentParser, *old: str, required: bool = False) -> None:
    """--broker-url and --broker-token (env FERRY_BROKER_URL, FERRY_BROKER_TOKEN)."""
    url = env(BROKER_URL_ENV)
    renamed(p, "--broker-url", *old, default=url if url or required else DEFAULT_BROKER_URL,
            metavar="URL",
            help=f"broker URL, e.g. {DEFAULT_BROKER_URL} (env {BROKER_URL_ENV})")
    renamed(p, "--broker-token", "--token", default=env(BROKER_TOKEN_ENV), metavar="TOKEN",
            help=f"bearer token, when the broker requires one (env {BROKER_TOKEN_ENV})")


def add_metrics_address(p: argparse.ArgumentParser, *old: str, port: int,
                        what: str = "/metrics and /healthz") -> None:
    """--metrics-host and --metrics-port (env FERRY_METRICS_HOST, FERRY_METRICS_PORT)."""
    renamed(p, "--metrics-host", *(o.replace("-port", "-host") for o in old),
            default=env(METRICS_HOST_ENV, "0.0.0.0"), metavar="ADDRESS",
            help=f"address of {what} (env {METRICS_HOST_ENV}; default 0.0.0.0)")
    renamed(p, "--metrics-port", *old, type=port_number,
            default=port_number(env(METRICS_PORT_ENV, str(port))), metavar="PORT",
            help=f"port of {what} (env {METRICS_PORT_ENV}; default {port}"
            + (": any free port, logged at start)" if port == 0 else ")"))


def add_log_level(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", type=str.lower, choices=LOG_LEVELS,
                   default=(env(LOG_LEVEL_ENV) or "info").lower(),
                   help=f"least severe level logged (env {LOG_LEVEL_ENV}; default info)")


# --- validators: bad values fail with a clear message -----------------------------------


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def int_between(low: int, high: float = math.inf, bounds: str = "") -> Callable[[str], int]:
    """A whole number in [low, high]; `bounds` says so in the error (default "LOW-HIGH")."""
    def parse(text: str) -> int:
        value = whole_number(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {bounds or f'{low}-{high}'}, got {value}")
        return value

    return parse


def int_at_least(minimum: int) -> Callable[[str], int]:
    return int_between(minimum, bounds=f"at least {minimum}")


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
port_number = int_between(0, 65535)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value
