"""The `ferry` command line: its parser and where the connection settings come from (pure)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass

from ferry.kit.config import (
    BROKER_TOKEN_ENV,
    BROKER_URL_ENV,
    DEFAULT_BROKER_URL,
    env,
    int_between,
    non_negative_int,
    positive_float,
    positive_int,
    renamed,
)

EPILOG = f"Environment: {BROKER_URL_ENV} (default {DEFAULT_BROKER_URL}), {BROKER_TOKEN_ENV}."
PRIORITY = int_between(0, 9)
# A message's states in a group, as the broker names them (browse --state in-flight too).
STATES = ("ready", "in_flight", "delayed", "dead", "acked")


@dataclass(frozen=True)
class Connection:
    url: str
    token: str | None
    timeout: float
    retries: int


# Defaults of the options every command takes (their parsers SUPPRESS them, see _common).
COMMON_DEFAULTS: dict[str, object] = {
    "url": None,
    "token": None,
    "timeout": 30.0,
    "retries": 2,
    "json": False,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    for name, default in COMMON_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    return args


def connection(args: argparse.Namespace, environ: Mapping[str, str]) -> Connection:
    """Flags win over the environment, the environment over the defaults.

    FERRY_URL and FERRY_TOKEN are the deprecated names of FERRY_BROKER_URL/_TOKEN.
    """
    return Connection(
        url=args.url or env(BROKER_URL_ENV, old="FERRY_URL", environ=environ)
        or DEFAULT_BROKER_URL,
        token=args.token or env(BROKER_TOKEN_ENV, old="FERRY_TOKEN", environ=environ) or None,
        timeout=args.timeout,
        retries=args.retries,
    )


def _common() -> argparse.ArgumentParser:
    """Options accepted before or after the command (`ferry --json queue list` or `... --json`).

    SUPPRESS keeps a subcommand's parser from overwriting a value given earlier.
    """
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection and output")
    sup = argparse.SUPPRESS
    renamed(group, "--broker-url", "--url", dest="url", default=sup, metavar="URL",
            help=f"broker URL (env {BROKER_URL_ENV}; {DEFAULT_BROKER_URL})")
    renamed(group, "--broker-token", "--token", dest="token", default=sup, metavar="TOKEN",
            help=f"bearer token (env {BROKER_TOKEN_ENV})")
    group.add_argument(
        "--timeout",
        type=positive_float,
        default=sup,
        metavar="SECONDS",
        help="per-request timeout (default 30)",
    )
    group.add_argument(
        "--retries",
        type=non_negative_int,
        metavar="N",
        default=sup,
        help="retries on connection errors and 5xx (default 2)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=sup,
        help="print machine-readable JSON instead of tables",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="ferry",
        description="Use Ferry queues from a shell.",
        epilog=EPILOG,
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def sub(
        parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str
    ) -> argparse.ArgumentParser:
        return parent.add_parser(
            name, help=help_, description=help_, parents=[common], epilog=EPILOG
        )

    queue = sub(commands, "queue", "create, list, inspect and delete queues")
    queues = queue.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub(queues, "create", "create a queue, or update its settings")
    create.add_argument("queue")
    create.add_argument("--max-message-bytes", type=positive_int, metavar="BYTES")
    create.add_argument("--retention-ms", type=positive_int, metavar="MS")
    create.add_argument("--visibility-timeout-ms", type=positive_int, metavar="MS")
    create.add_argument(
        "--max-deliveries",
        type=positive_int,
        metavar="N",
        help="deliveries before a message is dead-lettered",
    )
    create.add_argument("--dedup-window-ms", type=non_negative_int, metavar="MS")
    create.add_argument(
        "--fair", action="store_true", default=None, help="deliver round-robin across message keys"
    )
    sub(queues, "list", "list queues with their figures")
    sub(queues, "stats", "a queue's settings, figures and groups").add_argument("queue")
    sub(queues, "delete", "delete a queue and every message in it").add_argument("queue")

    group = sub(commands, "group", "create, inspect and delete consumer groups")
    groups = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    gcreate = sub(groups, "create", "create a consumer group, or update its settings")
    _queue_group(gcreate)
    gcreate.add_argument(
        "--start-at",
        choices=["earliest", "latest"],
        help="earliest: every stored message; latest: only new ones",
    )
    gcreate.add_argument("--visibility-timeout-ms", type=positive_int, metavar="MS")
    gcreate.add_argument("--max-deliveries", type=positive_int, metavar="N")
    gcreate.add_argument(
        "--backoff-initial-ms",
        type=non_negative_int,
        metavar="MS",
        help="nack backoff: first delay",
    )
    gcreate.add_argument(
        "--backoff-multiplier",
        type=positive_float,
        metavar="X",
        help="nack backoff: growth per delivery",
    )
    gcreate.add_argument(
        "--backoff-max-ms", type=non_negative_int, metavar="MS", help="nack backoff: cap"
    )
    gcreate.add_argument(
        "--match", action="append", default=[], type=_header, metavar="NAME=VALUE",
        help="filter: only messages with this header value (repeatable; all must hold)",
    )
    gcreate.add_argument(
        "--prefix", action="append", default=[], type=_header, metavar="NAME=START",
        help="filter: only messages whose header starts with START (repeatable)",
    )
    _queue_group(sub(groups, "delete", "delete a consumer group"))
    _queue_group(sub(groups, "stats", "a group's figures and consumers"))

    publish = sub(
        commands, "publish", "publish lines of stdin or a file, one message each (JSON, else text)"
    )
    publish.add_argument("queue")
    publish.add_argument("--file", "-f", help="read this file instead of stdin")
    publish.add_argument(
        "--text", action="store_true", help="every line is a text body, even if it parses as JSON"
    )
    publish.add_argument("--key", help="message key (fair delivery, ordering per key)")
    publish.add_argument("--priority", type=PRIORITY, default=0, help="0-9, higher first")
    publish.add_argument("--delay-ms", type=non_negative_int, metavar="MS", default=0)
    publish.add_argument(
        "--header",
        action="append",
        default=[],
        type=_header,
        metavar="NAME=VALUE",
        help="add a header (repeatable)",
    )
    publish.add_argument("--batch-size", type=positive_int, default=500, metavar="N")
    publish.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )

    consume = sub(commands, "consume", "print messages of a group, acking each")
    _queue_group(consume)
    consume.add_argument("--consumer", default=None, help="consumer name (default ferry-cli-PID)")
    consume.add_argument(
        "--max", type=positive_int, metavar="N", help="stop after this many messages"
    )
    consume.add_argument(
        "--idle",
        type=positive_float,
        metavar="SECONDS",
        help="stop when no message came for this long",
    )
    consume.add_argument(
        "--no-ack",
        dest="ack",
        action="store_false",
        help="hand the messages back instead of acking them",
    )
    consume.add_argument("--mode", choices=["stream", "sse", "poll"], default="stream")

    dead = sub(commands, "dead", "list and redrive a group's dead letters")
    deads = dead.add_subparsers(dest="action", metavar="ACTION", required=True)
    dlist = sub(deads, "list", "list dead letters")
    _queue_group(dlist)
    dlist.add_argument("--limit", type=positive_int, default=100, metavar="N")
    dlist.add_argument("--cursor", help="next_cursor of a previous page")
    redrive = sub(deads, "redrive", "move dead letters back to the group")
    _queue_group(redrive)
    redrive.add_argument("ids", nargs="*", metavar="ID", help="only these (default: all)")

    message = sub(commands, "message", "show one message and its state in every group")
    message.add_argument("queue")
    message.add_argument("id")
    message.add_argument(
        "--priority", type=PRIORITY, metavar="N",
        help="first change its priority (0-9) for deliveries still to come",
    )
    browse = sub(commands, "browse",
                 "list stored messages a page at a time, without consuming them")
    browse.add_argument("queue")
    browse.add_argument("--group", help="only messages this group is not done with")
    browse.add_argument("--state", choices=[s.replace("_", "-") for s in STATES],
                        help="only messages in this state for --group")
    browse.add_argument("--key", help="only messages with this key")
    browse.add_argument("--priority", type=PRIORITY, metavar="N",
                        help="only messages of this priority (0-9)")
    browse.add_argument("--limit", type=int_between(1, 1000), default=20, metavar="N",
                        help="messages per page (1-1000, default 20)")
    browse.add_argument("--cursor", help="continue after this page (printed as 'more:')")

    cancel = sub(commands, "cancel",
                 "remove stored messages for every group (a lease on one can no longer ack)")
    cancel.add_argument("queue")
    cancel.add_argument("ids", nargs="+", metavar="ID")

    purge = sub(commands, "purge",
                "remove the messages ready now, for one group or every group of the queue "
                "(in flight, delayed and dead ones stay)")
    purge.add_argument("queue")
    purge.add_argument("group", nargs="?", help="only for this group (default: every group)")
    purge.add_argument("--yes", action="store_true", help="do it (without, nothing is purged)")
    return parser


def _queue_group(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("queue")
    parser.add_argument("group")


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value
