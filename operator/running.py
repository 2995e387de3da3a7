"""Run kopf with Ferry's handlers, settings and clients, next to /metrics and /healthz."""

from __future__ import annotations

import asyncio
import logging

import kopf

from ferry.operator import handlers, serving
from ferry.operator.clients.brokers import Brokers
from ferry.operator.clients.kube import KubeClient, load_credentials
from ferry.operator.handlers.common import Runtime
from ferry.operator.metrics import READY
from ferry.operator.reconcile.metadata import FINALIZER, GROUP
from ferry.operator.settings import OperatorSettings

log = logging.getLogger("ferry.operator")


def kopf_settings() -> kopf.OperatorSettings:
    s = kopf.OperatorSettings()
    s.persistence.finalizer = FINALIZER
    # Progress and diff-base in annotations: status holds only Ferry's own schema.
    s.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    s.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    s.execution.max_workers = 4
    s.networking.request_timeout = 60
    # Ride out an API server whose watch cache is (re)initializing (429) or restarting for
    # about three minutes before kopf gives up on a watch (its default is under a minute).
    s.networking.error_backoffs = [1, 2, 4, 8, 15, 30, 30, 30, 30, 30]
    s.watching.server_timeout = 60
    return s


async def run(settings: OperatorSettings) -> None:
    registry = kopf.OperatorRegistry()
    handlers.register(registry, settings)
    kube = KubeClient(load_credentials(settings.kubeconfig))
    brokers = Brokers()
    ready, stop = asyncio.Event(), asyncio.Event()
    operator = asyncio.create_task(kopf.operator(
        registry=registry,
        settings=kopf_settings(),
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        standalone=settings.peering is None,
        peering_name=settings.peering,
        priority=settings.priority,
        ready_flag=ready,
        stop_flag=stop,
        memo=kopf.Memo(runtime=Runtime(settings=settings, kube=kube, brokers=brokers)),
    ), name="kopf")
    server = await serving.start(settings.metrics_host, settings.metrics_port, ready, operator)
    watcher = asyncio.create_task(_mark_ready(ready), name="ready-gauge")
    log.info("ferry-operator serving /metrics and /healthz on %s:%d (%s)",
             settings.metrics_host, settings.metrics_port,
             ", ".join(settings.namespaces) or "cluster-wide")
    try:
        await operator
    finally:
        watcher.cancel()
        await server.cleanup()
        await brokers.close()
        await kube.close()
        log.info("ferry-operator stopped")


async def _mark_ready(ready: asyncio.Event) -> None:
    await ready.wait()
    READY.set(1)
