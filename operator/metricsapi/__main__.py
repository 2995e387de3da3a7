"""`ferry-metrics-api` (also `python -m ferry.operator.metricsapi`): serve queue lag to HPAs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from aiohttp import web

from ferry.broker.client import BrokerClient, BrokerError
from ferry.kit import logs
from ferry.kit.config import add_log_level, port_number, positive_float
from ferry.kit.serving import serve
from ferry.operator.clients.kube import KubeClient, load_credentials
from ferry.operator.clients.kubereads import AccessReviewer, KubeReader, KubernetesReadError
from ferry.operator.metricsapi import certificates, frontproxy
from ferry.operator.metricsapi.access import AllowAuthenticated, Authorizer, DelegatedAuthorizer
from ferry.operator.metricsapi.lags import (
    Directory,
    KubeDirectory,
    LagReader,
    StaticDirectory,
    StatsCache,
    StatsClient,
)
from ferry.operator.metricsapi.ownership import CHECK_SECONDS, Watch
from ferry.operator.metricsapi.routes import make_app

log = logging.getLogger("ferry.metricsapi")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ferry-metrics-api",
        description="Serve external.metrics.k8s.io/v1beta1 (ferry_consumergroup_lag) for "
                    "HorizontalPodAutoscalers, behind the API server's aggregation layer.")
    p.add_argument("--bind-address", default="0.0.0.0", help="address to listen on")
    p.add_argument("--secure-port", type=port_number, default=6443,
                   help="HTTPS port (default 6443)")
    p.add_argument("--tls-cert-file", help="serving certificate (PEM); without it a "
                   "self-signed one is made at start")
    p.add_argument("--tls-private-key-file", help="key of --tls-cert-file")
    p.add_argument("--service", default="ferry-metrics-api",
                   help="Service name, for the self-signed certificate's names")
    p.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", "ferry-system"),
                   help="Service namespace, for the self-signed certificate's names "
                        "(default: $POD_NAMESPACE, else ferry-system)")
    p.add_argument("--requestheader-client-ca-file",
                   help="CA of the front proxy's client certificate; default: read "
                        "kube-system/extension-apiserver-authentication")
    p.add_argument("--requestheader-allowed-names", default="",
                   help="comma-separated CNs allowed as front proxy (with the CA file; "
                        "empty: any)")
    p.add_argument("--kubeconfig", help="default: in-cluster credentials, else ~/.kube/config")
    p.add_argument("--group", action="append", default=[], metavar="NS/QUEUE/GROUP=URL",
                   help="serve this group's lag from this broker instead of listing "
                        "ConsumerGroup resources (repeatable); with "
                        "--requestheader-client-ca-file no Kubernetes API is used at all and "
                        "every front-proxied user may read")
    p.add_argument("--broker-token", dest="token", default=os.environ.get("FERRY_BROKER_TOKEN"),
                   help="bearer token for --group brokers (env FERRY_BROKER_TOKEN); groups "
                        "found as ConsumerGroup resources use the Secret their status names")
    p.add_argument("--cache-ttl", type=float, default=2.0,
                   help="seconds a broker's figure is reused (default 2)")
    p.add_argument("--broker-timeout", type=float, default=3.0,
                   help="seconds to wait for a broker's stats (default 3)")
    p.add_argument("--apiservice-check-seconds", type=positive_float, default=CHECK_SECONDS,
                   help="how often to read who holds the cluster's external metrics "
                        f"APIService (default {CHECK_SECONDS:.0f}); /readyz answers 503 while "
                        "another server holds it")
    add_log_level(p)
    return p


def _serving_pair(args: argparse.Namespace) -> tuple[str, str]:
    if args.tls_cert_file and args.tls_private_key_file:
        return args.tls_cert_file, args.tls_private_key_file
    if args.tls_cert_file or args.tls_private_key_file:
        raise SystemExit("ferry-metrics-api: give both --tls-cert-file and "
                         "--tls-private-key-file, or neither")
    hosts = certificates.serving_hosts(args.service, args.namespace)
    issued = certificates.issue(None, hosts[0], hosts=hosts)
    cert, key = issued.write(Path(tempfile.mkdtemp(prefix="ferry-metrics-api-")), "serving")
    log.info("made a self-signed serving certificate", extra={"names": list(hosts)})
    return str(cert), str(key)


async def _requestheader(args: argparse.Namespace,
                         reader: KubeReader | None) -> frontproxy.RequestHeaderConfig:
    if args.requestheader_client_ca_file:
        names = tuple(n for n in args.requestheader_allowed_names.split(",") if n)
        ca = await asyncio.to_thread(Path(args.requestheader_client_ca_file).read_text)
        return frontproxy.RequestHeaderConfig(client_ca=ca, allowed_names=names)
    if reader is None:
        raise SystemExit("ferry-metrics-api: --requestheader-client-ca-file is needed when "
                         "Kubernetes is not used (--group)")
    data = await reader.configmap_data(frontproxy.CONFIGMAP_NAMESPACE, frontproxy.CONFIGMAP_NAME)
    return frontproxy.RequestHeaderConfig.from_configmap(data)


def _broker(timeout: float, default_token: str | None) -> Callable[[str, str | None],
                                                                   StatsClient]:
    def client_for(url: str, token: str | None) -> StatsClient:
        # One quick attempt: the HPA asks again at its next sync, and a stale answer is worse.
        return BrokerClient(url, token=token or default_token, timeout=timeout, retries=1,
                            websocket=False)
    return client_for


def _kube(args: argparse.Namespace) -> KubeClient | None:
    """The one Kubernetes client, or None when --group and a front-proxy CA make it unneeded."""
    if args.group and args.requestheader_client_ca_file:
        return None
    return KubeClient(load_credentials(args.kubeconfig))


async def _build(
        args: argparse.Namespace) -> tuple[web.Application, frontproxy.RequestHeaderConfig]:
    """The application and the front proxy's CA and names, on the serving loop (the one
    Kubernetes client's session belongs to it; the app closes it at cleanup)."""
    kube = _kube(args)
    try:
        auth = await _requestheader(args, KubeReader(kube) if kube is not None else None)
    except BaseException:
        if kube is not None:
            await kube.close()
        raise
    authorizer: Authorizer = AllowAuthenticated()
    if kube is not None:
        authorizer = DelegatedAuthorizer(AccessReviewer(kube))
    directory: Directory
    if args.group:
        directory = StaticDirectory.parse(args.group)
    else:
        assert kube is not None
        directory = KubeDirectory(KubeReader(kube), ttl=max(args.cache_ttl, 1.0))
    cache = StatsCache(_broker(args.broker_timeout, args.token), ttl=args.cache_ttl)
    lags = LagReader(directory, cache, errors=(BrokerError, OSError, asyncio.TimeoutError))
    watch = None
    if kube is not None:
        watch = Watch(kube, args.namespace, args.service, every=args.apiservice_check_seconds)
    app = make_app(lags, cache, auth, authorizer, watch)
    if kube is not None:
        async def close(_: web.Application) -> None:
            await kube.close()
        app.on_cleanup.append(close)
    return app, auth


async def run(args: argparse.Namespace) -> int:
    """Build the app and serve it on the same event loop (its clients belong to that loop)."""
    try:
        if args.group:
            StaticDirectory.parse(args.group)
        cert, key = _serving_pair(args)
        app, auth = await _build(args)
        context = frontproxy.server_context(cert, key, auth)
    except (ValueError, OSError, KubernetesReadError) as error:
        print(f"ferry-metrics-api: {error}", file=sys.stderr)
        return 2
    try:
        await serve(app, args.bind_address, args.secure_port, ssl_context=context,
                    started=lambda port: log.info(
                        "serving", extra={"address": args.bind_address, "port": port}))
    except OSError as error:
        print(f"ferry-metrics-api: cannot listen on {args.bind_address}:{args.secure_port}: "
              f"{error}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.setup("ferry-metrics-api", args.log_level)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
