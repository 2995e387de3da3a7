"""`ferry-operator` / `python -m ferry.operator`: run the operator with the current kubeconfig."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sys

from pydantic import ValidationError

from ferry.kit import logs
from ferry.kit.config import BROKER_URL_ENV, add_log_level, add_metrics_address, env
from ferry.operator.settings import OperatorSettings


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ferry-operator",
        description="Reconcile Ferry's Queue, ConsumerGroup and TelemetryPipeline resources "
        "(the kubeconfig in $KUBECONFIG or ~/.kube/config, or the pod's service account).")
    p.add_argument("-n", "--namespace", dest="namespaces", action="append", default=[],
                   help="watch only this namespace (repeatable; default: cluster-wide; "
                   "env FERRY_NAMESPACES, comma-separated)")
    p.add_argument("--kubeconfig", default=env("KUBECONFIG"), help="kubeconfig file")
    p.add_argument("--peering", default=env("FERRY_PEERING"),
                   help="kopf peering object shared by replicas (default: ferry, or "
                   "standalone with a warning when kopf's peering CRDs are not installed; "
                   "given explicitly, the operator waits for them); env FERRY_PEERING")
    p.add_argument("--priority", type=int, default=None,
                   help="peering priority; the highest acts and the others wait as hot "
                   "standbys (kopf pauses equal priorities), so the default is random")
    p.add_argument("--standalone", action="store_true",
                   help="run without peering (only one replica may run)")
    p.add_argument("--broker-url", default=env(BROKER_URL_ENV),
                   help="talk to this broker for Queues without spec.broker.url, for control "
                   f"planes whose pods never run (envtest, make demo); env {BROKER_URL_ENV}")
    p.add_argument("--external-broker-namespaces",
                   default=env("FERRY_EXTERNAL_BROKER_NAMESPACES", ""),
                   help="comma-separated namespaces whose Queues may name an external broker "
                   "(spec.broker.url), or '*' for every namespace; default: none, so a tenant "
                   "cannot point the operator at another namespace's broker or at arbitrary "
                   "addresses; env FERRY_EXTERNAL_BROKER_NAMESPACES")
    p.add_argument("--image", default=env("FERRY_IMAGE"),
                   help="image of the brokers and pipelines this operator runs when a resource "
                   "sets none (default: the operator's own image, read from its pod via "
                   "POD_NAMESPACE and POD_NAME, so upgrading the operator rolls them; env "
                   "FERRY_IMAGE)")
    p.add_argument("--image-pull-secret", dest="image_pull_secrets", action="append",
                   default=[], help="a Secret every pod Ferry creates lists in imagePullSecrets "
                   "(repeatable; it must exist in each namespace that holds Ferry resources; "
                   "env FERRY_IMAGE_PULL_SECRETS, comma-separated)")
    add_metrics_address(p, port=8081)
    p.add_argument("--resync-seconds", type=float,
                   default=float(env("FERRY_RESYNC_SECONDS", "30")),
                   help="re-apply children this often, repairing drift (default 30)")
    p.add_argument("--stats-seconds", type=float,
                   default=float(env("FERRY_STATS_SECONDS", "10")),
                   help="poll broker stats into status this often (default 10)")
    p.add_argument("--delete-attempts", type=int,
                   default=int(env("FERRY_DELETE_ATTEMPTS", "5")),
                   help="broker delete attempts before a finalizer gives up (default 5)")
    p.add_argument("--retry-base-seconds", type=float,
                   default=float(env("FERRY_RETRY_BASE_SECONDS", "2")),
                   help="first retry delay of a failed deletion, doubling each time (default 2)")
    add_log_level(p)
    return p


def _own_pod() -> tuple[str, str] | None:
    """POD_NAMESPACE and POD_NAME, which the Deployment sets through the downward API."""
    namespace, name = os.environ.get("POD_NAMESPACE"), os.environ.get("POD_NAME")
    return (namespace, name) if namespace and name else None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    namespaces = args.namespaces or [
        n for n in os.environ.get("FERRY_NAMESPACES", "").split(",") if n]
    pull_secrets = args.image_pull_secrets or [
        n for n in os.environ.get("FERRY_IMAGE_PULL_SECRETS", "").split(",") if n]
    try:
        settings = OperatorSettings(
            namespaces=namespaces, peering=None if args.standalone else args.peering or "ferry",
            peering_required=args.peering is not None,
            priority=random.randrange(1, 2**31) if args.priority is None else args.priority,
            broker_url=args.broker_url, kubeconfig=args.kubeconfig,
            external_broker_namespaces=frozenset(
                n.strip() for n in args.external_broker_namespaces.split(",") if n.strip()),
            image=args.image or None, image_pull_secrets=tuple(pull_secrets),
            pod=_own_pod(),
            metrics_host=args.metrics_host, metrics_port=args.metrics_port,
            resync_seconds=args.resync_seconds, stats_seconds=args.stats_seconds,
            delete_attempts=args.delete_attempts, retry_base_seconds=args.retry_base_seconds)
    except ValidationError as e:
        print(f"ferry-operator: invalid settings:\n{e}", file=sys.stderr)
        return 2
    logs.setup("ferry-operator", args.log_level)
    if args.log_level != "debug":  # kopf logs every successful timer run at INFO
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    from ferry.operator.running import run  # kopf is heavy: not needed for --help

    asyncio.run(run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
