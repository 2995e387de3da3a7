"""`kubectl ferry` (the `kubectl-ferry` plugin): what `kubectl get` cannot show.

    kubectl ferry top queues [-A]            live figures of every Queue, from its broker
    kubectl ferry dead GROUP [--redrive]     a ConsumerGroup's dead letters, or redrive them
    kubectl ferry peek QUEUE                 stored messages, without consuming them

Brokers are found the way the operator sees them (a Queue's status.endpoint and
status.tokenSecret); an in-cluster Service address is reached through kubectl port-forward.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from kubernetes import config as kubeconfig

from ferry.broker.cli.tables import dead_table, messages_table
from ferry.broker.client import BrokerClient, BrokerError
from ferry.broker.models import QueueStats
from ferry.operator.clients.errors import KubeError
from ferry.operator.clients.kube import KubeClient, load_credentials
from ferry.operator.kubectl import views
from ferry.operator.kubectl.resolving import (
    PluginError,
    Target,
    group_queue,
    named_queue,
    queue_target,
    reachable,
)
from ferry.operator.reconcile.metadata import API_VERSION

PROG = "kubectl ferry"
MAX_LIMIT = 1000


def _limit(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= n <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_LIMIT}, got {n}")
    return n


def _common(p: argparse.ArgumentParser, *, top: bool) -> None:
    """kubectl's own flags, accepted before or after the command (as kubectl users type);
    a subcommand's copy only overrides what was typed after it."""
    def default(value: str | None) -> Any:
        return value if top else argparse.SUPPRESS

    p.add_argument("-n", "--namespace", default=default(None),
                   help="namespace (default: the kubeconfig context's)")
    p.add_argument("--kubeconfig", default=default(None),
                   help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("-o", "--output", choices=["table", "json"], default=default("table"),
                   help="table (default) or json")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p, top=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    top = sub.add_parser("top", help="live figures from the brokers",
                         description="Live figures of Queues, read from their brokers.")
    _common(top, top=False)
    top.add_argument("what", choices=["queues"], help="what to show (queues)")
    top.add_argument("-A", "--all-namespaces", action="store_true",
                     help="every namespace, not just one")
    dead = sub.add_parser("dead", help="a ConsumerGroup's dead letters (list or redrive)",
                          description="List a ConsumerGroup's dead letters, or move them back "
                          "to the group with --redrive.")
    _common(dead, top=False)
    dead.add_argument("group", help="ConsumerGroup name")
    dead.add_argument("--redrive", action="store_true",
                      help="move dead letters back to the group (all, or those of --id)")
    dead.add_argument("--id", dest="ids", action="append", default=[], metavar="ID",
                      help="only this dead letter (repeatable; with --redrive)")
    dead.add_argument("--limit", type=_limit, default=100, help="page size (1-1000, 100)")
    dead.add_argument("--cursor", help="continue after this page (printed as 'more:')")
    peek = sub.add_parser("peek", help="stored messages of a Queue, without consuming them",
                          description="Stored messages of a Queue, oldest first, with their "
                          "state in every group; nothing is leased or changed.")
    _common(peek, top=False)
    peek.add_argument("queue", help="Queue name")
    peek.add_argument("--limit", type=_limit, default=20, help="how many (1-1000, 20)")
    peek.add_argument("--cursor", help="continue after this page (printed as 'more:')")
    return p


def _namespace(args: argparse.Namespace) -> str:
    if args.namespace:
        return str(args.namespace)
    try:
        _, active = kubeconfig.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=args.kubeconfig)
    except (kubeconfig.ConfigException, OSError):
        return "default"
    return str((active or {}).get("context", {}).get("namespace") or "default")


def _kubectl(args: argparse.Namespace) -> list[str]:
    return ["kubectl", *(["--kubeconfig", args.kubeconfig] if args.kubeconfig else [])]


@contextlib.asynccontextmanager
async def _broker(args: argparse.Namespace, target: Target) -> AsyncIterator[BrokerClient]:
    """A client of the target's broker (port-forwarded when in-cluster): one try, no
    WebSocket, as a one-shot command wants."""
    with reachable(target.url, _kubectl(args)) as url:
        async with BrokerClient(url, token=target.token, retries=1, timeout=10,
                                websocket=False) as client:
            yield client


def _emit(args: argparse.Namespace, value: Any, text: str) -> None:
    if args.output == "json":
        print(json.dumps(value, indent=2, default=str))
    else:
        print(text)


async def _top(args: argparse.Namespace, kube: KubeClient) -> int:
    namespace = "" if args.all_namespaces else _namespace(args)
    try:
        listed = await kube.list(API_VERSION, "Queue", namespace, "")
    except KubeError as e:
        raise PluginError(f"cannot list Queues: {e}") from e
    rows: list[tuple[str, str, QueueStats | str]] = []
    for queue in sorted(listed, key=lambda q: (q["metadata"]["namespace"],
                                                q["metadata"]["name"])):
        ns, name = queue["metadata"]["namespace"], queue["metadata"]["name"]
        try:
            target = await queue_target(kube, ns, queue)
            async with _broker(args, target) as client:
                rows.append((ns, name, await client.queue_stats(name)))
        except (PluginError, BrokerError) as e:
            rows.append((ns, name, str(e)))
    _emit(args, [{"namespace": ns, "queue": n, "stats": s if isinstance(s, str)
                  else s.model_dump(mode="json")} for ns, n, s in rows],
          views.top_queues(rows))
    return 0


async def _dead(args: argparse.Namespace, kube: KubeClient) -> int:
    target = await group_queue(kube, _namespace(args), args.group)
    async with _broker(args, target) as client:
        if args.redrive:
            count = await client.redrive(target.queue, args.group, args.ids or None)
            _emit(args, {"redriven": count},
                  f"redrove {count:,} dead letters back to {target.queue}/{args.group}")
            return 0
        if args.ids:
            raise PluginError("--id selects dead letters to redrive: add --redrive")
        page = await client.dead_letters(target.queue, args.group, limit=args.limit,
                                         cursor=args.cursor)
    _emit(args, page.model_dump(mode="json"), dead_table(page, int(time.time() * 1000)))
    return 0


async def _peek(args: argparse.Namespace, kube: KubeClient) -> int:
    target = await named_queue(kube, _namespace(args), args.queue)
    async with _broker(args, target) as client:
        page = await client.browse(target.queue, limit=args.limit, cursor=args.cursor)
    _emit(args, page.model_dump(mode="json"), messages_table(page, int(time.time() * 1000)))
    return 0


COMMANDS = {"top": _top, "dead": _dead, "peek": _peek}


async def _run(args: argparse.Namespace) -> int:
    try:
        credentials = load_credentials(args.kubeconfig)
    except (kubeconfig.ConfigException, OSError) as e:
        raise PluginError(f"no Kubernetes credentials: {e}") from e
    kube = KubeClient(credentials)
    try:
        return await COMMANDS[args.command](args, kube)
    finally:
        await kube.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except (PluginError, BrokerError, KubeError) as e:
        print(f"kubectl-ferry: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
